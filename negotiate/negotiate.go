// Package negotiate helps an application's own negotiate endpoint send
// SignalR clients to Switchboard (or Azure SignalR Service) in serverless
// mode: it mints the client access token and answers the redirect
// {"url", "accessToken"} that @microsoft/signalr and the other official
// clients follow.
//
//	svc, err := negotiate.New(os.Getenv("SIGNALR_CONNECTION_STRING"))
//	http.Handle("/api/negotiate", svc.Handler("chat", func(r *http.Request) string {
//		return currentUser(r) // "" for anonymous
//	}))
//	// client: new HubConnectionBuilder().withUrl("https://app.example.com/api").build()
package negotiate

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/switchboardhq/switchboard/internal/auth"
)

// Service holds a SignalR endpoint and the key that signs client tokens.
type Service struct {
	endpoint string
	keys     *auth.KeyRing
}

// New reads a connection string such as
// "Endpoint=http://localhost;Port=8081;AccessKey=…;Version=1.0;".
func New(connectionString string) (*Service, error) {
	endpoint, key, err := auth.ParseConnectionString(connectionString)
	if err != nil {
		return nil, fmt.Errorf("negotiate: %w", err)
	}
	keys, err := auth.NewKeyRing(key)
	if err != nil {
		return nil, fmt.Errorf("negotiate: %w", err)
	}
	return &Service{endpoint: endpoint, keys: keys}, nil
}

// Options describe one client.
type Options struct {
	UserID string        // "" for an anonymous connection
	TTL    time.Duration // token lifetime; 0 means one hour
}

// Response is the redirect negotiate answer; its JSON field names are the
// ones the clients read.
type Response struct {
	URL         string `json:"url"`
	AccessToken string `json:"accessToken"`
}

// Negotiate returns the URL and access token that send a client of hub to the service.
func (s *Service) Negotiate(hub string, o Options) (Response, error) {
	aud := auth.SignalRClientAudience(s.endpoint, hub)
	tok, err := s.keys.MintSignalRClientToken(aud, o.UserID, o.TTL)
	if err != nil {
		return Response{}, fmt.Errorf("negotiate: %w", err)
	}
	return Response{URL: aud, AccessToken: tok}, nil
}

// Handler serves the app's negotiate endpoint for hub: the clients POST to
// "<the URL they were given>/negotiate", so mount it at that path. userID
// names the user of a request ("" for anonymous). Browsers on other origins
// are allowed with credentials, as the clients send them by default.
func (s *Service) Handler(hub string, userID func(*http.Request) string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if o := r.Header.Get("Origin"); o != "" {
			w.Header().Set("Access-Control-Allow-Origin", o)
			w.Header().Set("Access-Control-Allow-Credentials", "true")
			w.Header().Add("Vary", "Origin")
		}
		switch r.Method {
		case http.MethodOptions:
			w.Header().Set("Access-Control-Allow-Methods", "POST, OPTIONS")
			w.Header().Set("Access-Control-Allow-Headers", r.Header.Get("Access-Control-Request-Headers"))
			w.WriteHeader(http.StatusNoContent)
			return
		case http.MethodPost:
		default:
			http.Error(w, "negotiate takes POST", http.StatusMethodNotAllowed)
			return
		}
		uid := ""
		if userID != nil {
			uid = userID(r)
		}
		resp, err := s.Negotiate(hub, Options{UserID: uid})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(resp)
	})
}

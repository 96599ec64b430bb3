package auth_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/switchboardhq/switchboard/internal/auth"
)

// A service mints a client access token for hub "chat"; on the WebSocket upgrade the server
// verifies it against the request path. A reverse proxy may change the host: only the path
// of the audience counts.
func ExampleKeyRing_VerifyClientToken() {
	keys, err := auth.NewKeyRing("primary-access-key", "secondary-access-key")
	if err != nil {
		panic(err)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

	token, err := keys.MintClientToken(auth.ClientAudience("https://pubsub.example.com", "chat"), auth.MintOptions{
		UserID: "alice",
		Roles:  []string{"webpubsub.joinLeaveGroup"},
		Groups: []string{"lobby"},
		Now:    now,
	})
	if err != nil {
		panic(err)
	}

	claims, err := keys.VerifyClientToken(token, auth.ClientPath("chat"), now.Add(time.Minute))
	if err != nil {
		panic(err)
	}
	fmt.Println(claims.UserID, claims.Roles, claims.Groups, claims.Expires.UTC())

	_, err = keys.VerifyClientToken(token, auth.ClientPath("other"), now)
	fmt.Println(errors.Is(err, auth.ErrTokenAudience))

	_, err = keys.VerifyClientToken(token, auth.ClientPath("chat"), now.Add(2*time.Hour))
	fmt.Println(errors.Is(err, auth.ErrTokenExpired))
	// Output:
	// alice [webpubsub.joinLeaveGroup] [lobby] 2026-01-02 04:04:05 +0000 UTC
	// true
	// true
}

func ExampleParseConnectionString() {
	endpoint, key, err := auth.ParseConnectionString("Endpoint=http://localhost;Port=8080;AccessKey=secret;Version=1.0;")
	if err != nil {
		panic(err)
	}
	fmt.Println(endpoint, key)
	fmt.Println(auth.ConnectionString(endpoint, key))
	// Output:
	// http://localhost:8080 secret
	// Endpoint=http://localhost:8080;AccessKey=secret;Version=1.0;
}

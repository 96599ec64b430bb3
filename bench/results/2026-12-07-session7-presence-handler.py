import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_OPTIONS(self):
        self.send_response(200); self.send_header("WebHook-Allowed-Origin","*"); self.end_headers()
    def do_POST(self):
        n=int(self.headers.get("Content-Length","0")); self.rfile.read(n)
        self.send_response(204); self.end_headers()
    def log_message(self,*a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()

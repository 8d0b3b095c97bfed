package tenantvault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const (
	unitToken = "tvt_0123abcd_SUPERSECRETTOKENTEXT"
	unitValue = "sk_live_unit_value_do_not_print"
)

// fake is a tiny tenant-vault: secrets in a map, optional 429s, an SSE stream the test pushes into.
type fake struct {
	srv       *httptest.Server
	mu        sync.Mutex
	secrets   map[string][2]interface{}
	rateLimit bool
	events    bool
	batch     bool
	batches   atomic.Int64
	gets      atomic.Int64
	gate      chan struct{}
	streams   map[chan string]bool
	streamIDs []string // Last-Event-ID of each stream request
	auth      []string
}

func newFake(t *testing.T, rateLimit, events bool) *fake {
	f := &fake{secrets: map[string][2]interface{}{"acme/STRIPE_KEY": {unitValue, int64(1)}}, rateLimit: rateLimit, events: events, streams: map[chan string]bool{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.close)
	return f
}

func (f *fake) close() {
	f.dropStreams()
	f.srv.CloseClientConnections()
	f.srv.Close()
}

func sendJSON(w http.ResponseWriter, status int, v interface{}) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func errBody(code, msg string) map[string]interface{} {
	return map[string]interface{}{"error": map[string]string{"code": code, "message": msg}}
}

func (f *fake) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.auth = append(f.auth, r.Header.Get("Authorization"))
	f.mu.Unlock()
	if r.URL.Path == "/v1/events" {
		if !f.events {
			sendJSON(w, 404, errBody("not_found", "no route"))
			return
		}
		ch := make(chan string, 16)
		f.mu.Lock()
		f.streams[ch] = true
		f.streamIDs = append(f.streamIDs, r.Header.Get("Last-Event-ID"))
		f.mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		fmt.Fprint(w, "event: ready\ndata: {}\n\n")
		w.(http.Flusher).Flush()
		for {
			select {
			case text, ok := <-ch:
				if !ok {
					return
				}
				fmt.Fprint(w, text)
				w.(http.Flusher).Flush()
			case <-r.Context().Done():
				return
			}
		}
	}
	if r.Method == http.MethodPost && r.URL.Path == "/v1/secrets/batch-get" {
		f.batches.Add(1)
		if !f.batch {
			sendJSON(w, 404, errBody("not_found", "no route"))
			return
		}
		var in struct {
			Items []struct{ Tenant, Key string } `json:"items"`
		}
		_ = json.NewDecoder(r.Body).Decode(&in)
		var results []map[string]interface{}
		for _, it := range in.Items {
			f.mu.Lock()
			s, ok := f.secrets[it.Tenant+"/"+it.Key]
			f.mu.Unlock()
			if ok {
				results = append(results, map[string]interface{}{"tenant": it.Tenant, "key": it.Key, "value": s[0], "version": s[1], "updated_at": "2026-01-01T00:00:00Z", "source": "cache"})
			} else {
				results = append(results, map[string]interface{}{"tenant": it.Tenant, "key": it.Key, "error": map[string]string{"code": "secret_not_found", "message": "no such secret"}})
			}
		}
		sendJSON(w, 200, map[string]interface{}{"results": results})
		return
	}
	if f.rateLimit {
		w.Header().Set("Retry-After", "7")
		sendJSON(w, 429, errBody("rate_limited", "slow down"))
		return
	}
	parts := strings.Split(r.URL.Path, "/")
	if len(parts) != 6 || parts[1] != "v1" || parts[2] != "tenants" {
		sendJSON(w, 404, errBody("not_found", "no route"))
		return
	}
	if parts[3] != "acme" {
		sendJSON(w, 403, errBody("forbidden", "not your tenant"))
		return
	}
	// A read-only token with a key pattern: writes and keys outside the pattern are refused.
	if r.Method == http.MethodPut || r.Method == http.MethodDelete || parts[5] == "SCOPED_KEY" {
		sendJSON(w, 403, errBody("insufficient_scope", "the token's scopes do not allow this"))
		return
	}
	f.gets.Add(1)
	if f.gate != nil {
		<-f.gate
	}
	f.mu.Lock()
	s, ok := f.secrets[parts[3]+"/"+parts[5]]
	f.mu.Unlock()
	if !ok {
		sendJSON(w, 404, errBody("secret_not_found", "no such secret"))
		return
	}
	w.Header().Set("x-secret-source", "database")
	sendJSON(w, 200, map[string]interface{}{"key": parts[5], "value": s[0], "version": s[1], "updated_at": "2026-01-01T00:00:00Z"})
}

func (f *fake) push(text string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for ch := range f.streams {
		ch <- text
	}
}

func (f *fake) dropStreams() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for ch := range f.streams {
		close(ch)
	}
	f.streams = map[chan string]bool{}
}

func (f *fake) streamRequests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.streamIDs...)
}

type logCapture struct {
	mu    sync.Mutex
	lines []string
}

func (l *logCapture) log(level, msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, level+" "+msg)
}

func (l *logCapture) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func waitFor(cond func() bool, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

func mustNew(t *testing.T, url string, opts ...Option) *Client {
	t.Helper()
	c, err := New(url, unitToken, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRateLimitedCarriesRetryAfter(t *testing.T) {
	f := newFake(t, true, false)
	c := mustNew(t, f.srv.URL, WithoutEvents())
	_, err := c.GetSecret(context.Background(), "acme", "STRIPE_KEY")
	if !errors.Is(err, ErrRateLimited) {
		t.Fatalf("want ErrRateLimited, got %v", err)
	}
	d, ok := RetryAfter(err)
	if !ok || d != 7*time.Second {
		t.Fatalf("retry after %v %v, want 7s", d, ok)
	}
	var e *Error
	if !errors.As(err, &e) || e.Status != 429 || e.Code != "rate_limited" || e.Kind != KindRateLimited {
		t.Fatalf("unexpected error %#v", e)
	}
}

func TestTypedErrorsAndOptions(t *testing.T) {
	f := newFake(t, false, false)
	c := mustNew(t, f.srv.URL, WithoutEvents())
	ctx := context.Background()
	if _, err := c.GetSecret(ctx, "acme", "NOPE"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("want NotFound, got %v", err)
	}
	if _, err := c.GetSecret(ctx, "globex", "STRIPE_KEY"); !errors.Is(err, ErrForbidden) {
		t.Fatalf("want Forbidden, got %v", err)
	}
	for _, d := range []time.Duration{-time.Second, 3601 * time.Second} {
		if _, err := New(f.srv.URL, unitToken, WithCacheTTL(d)); !errors.Is(err, ErrInvalidRequest) {
			t.Fatalf("TTL %v: want InvalidRequest, got %v", d, err)
		}
	}
}

// 403 insufficient_scope (a read-only token, a key outside its pattern) is Forbidden.
func TestInsufficientScopeIsForbidden(t *testing.T) {
	f := newFake(t, false, false)
	c := mustNew(t, f.srv.URL, WithoutEvents())
	ctx := context.Background()
	calls := map[string]func() error{
		"get":    func() error { _, err := c.GetSecret(ctx, "acme", "SCOPED_KEY"); return err },
		"set":    func() error { _, err := c.SetSecret(ctx, "acme", "STRIPE_KEY", "sk_never_written"); return err },
		"delete": func() error { return c.DeleteSecret(ctx, "acme", "STRIPE_KEY") },
	}
	for name, call := range calls {
		err := call()
		var e *Error
		if !errors.Is(err, ErrForbidden) || !errors.As(err, &e) || e.Status != 403 || e.Code != "insufficient_scope" || e.Kind != KindForbidden {
			t.Fatalf("%s: want Forbidden insufficient_scope, got %v", name, err)
		}
	}
	if v, err := c.GetSecret(ctx, "acme", "STRIPE_KEY"); err != nil || v != unitValue {
		t.Fatalf("a covered key: %v", err)
	}
}

func TestConcurrentMissesMakeOneRequest(t *testing.T) {
	f := newFake(t, false, false)
	f.gate = make(chan struct{})
	c := mustNew(t, f.srv.URL, WithoutEvents())
	var wg sync.WaitGroup
	values := make([]string, 20)
	for i := range values {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			values[i], _ = c.GetSecret(context.Background(), "acme", "STRIPE_KEY")
		}(i)
	}
	time.Sleep(100 * time.Millisecond)
	close(f.gate)
	wg.Wait()
	for _, v := range values {
		if v != unitValue {
			t.Fatal("a concurrent read got a wrong value")
		}
	}
	if n := f.gets.Load(); n != 1 {
		t.Fatalf("%d requests, want 1", n)
	}
	s, err := c.GetSecretEntry(context.Background(), "acme", "STRIPE_KEY")
	if err != nil || s.Source != SourceCache || f.gets.Load() != 1 {
		t.Fatalf("second read: %v %v, %d requests", s.Source, err, f.gets.Load())
	}
	if f.auth[0] != "Bearer "+unitToken {
		t.Fatal("token not sent as a bearer token")
	}
}

func TestTTLZeroDisablesCache(t *testing.T) {
	f := newFake(t, false, true)
	c := mustNew(t, f.srv.URL, WithCacheTTL(0))
	for i := 0; i < 2; i++ {
		if _, err := c.GetSecret(context.Background(), "acme", "STRIPE_KEY"); err != nil {
			t.Fatal(err)
		}
	}
	if f.gets.Load() != 2 || c.StreamState() != "disabled" {
		t.Fatalf("%d requests, stream %s", f.gets.Load(), c.StreamState())
	}
}

func TestEventDropsEntryAndResetDropsAll(t *testing.T) {
	f := newFake(t, false, true)
	logs := &logCapture{}
	c := mustNew(t, f.srv.URL, WithLogger(logs.log))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if !c.WaitForStream(ctx) {
		t.Fatal("stream not live")
	}
	if v, _ := c.GetSecret(ctx, "acme", "STRIPE_KEY"); v != unitValue {
		t.Fatal("first read")
	}
	f.mu.Lock()
	f.secrets["acme/STRIPE_KEY"] = [2]interface{}{"v2_value", int64(2)}
	f.mu.Unlock()
	if v, _ := c.GetSecret(ctx, "acme", "STRIPE_KEY"); v != unitValue {
		t.Fatal("should be cached until the event")
	}
	f.push(": heartbeat\r\n")
	f.push("id: 41\r\nevent: secret.written\r\ndata: {\"tenant\":\"acme\",")
	f.push("\"key\":\"STRIPE_KEY\",\"version\":2}\r\n\r\n")
	if !waitFor(func() bool { return c.Stats().Entries == 0 }, 2*time.Second) {
		t.Fatal("the event did not drop the entry")
	}
	s, err := c.GetSecretEntry(ctx, "acme", "STRIPE_KEY")
	if err != nil || s.Value() != "v2_value" || s.Source != SourceServer || s.Version != 2 {
		t.Fatalf("after the event: %v %v", s, err)
	}
	f.push("id: 42\nevent: reset\ndata: {\"reason\":\"lagged\"}\n\n")
	if !waitFor(func() bool { return c.Stats().Entries == 0 }, 2*time.Second) {
		t.Fatal("reset did not drop everything")
	}
	// Other tenants and other tokens leave the entry; its tenant or our own token drop it.
	for _, tc := range []struct {
		event, data string
		drops       bool
	}{
		{"tenant.deleted", `{"tenant":"globex"}`, false},
		{"token.revoked", `{"token_id":"99999999"}`, false},
		{"token.revoked", `{"token_id":"0123-ABCD"}`, true},
		{"tenant.deleted", `{"tenant":"acme"}`, true},
	} {
		if _, err := c.GetSecret(ctx, "acme", "STRIPE_KEY"); err != nil || c.Stats().Entries != 1 {
			t.Fatalf("refill: %v", err)
		}
		f.push("event: " + tc.event + "\ndata: " + tc.data + "\n\n")
		time.Sleep(100 * time.Millisecond)
		want := 1
		if tc.drops {
			want = 0
		}
		if got := c.Stats().Entries; got != want {
			t.Fatalf("%s %s: %d entries, want %d", tc.event, tc.data, got, want)
		}
	}
	if strings.Contains(logs.text(), "v2_value") {
		t.Fatal("a value in the log")
	}
}

func TestReconnectsWithLastEventID(t *testing.T) {
	f := newFake(t, false, true)
	c := mustNew(t, f.srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if !c.WaitForStream(ctx) {
		t.Fatal("stream not live")
	}
	f.push("id: 77\nevent: secret.deleted\ndata: {\"tenant\":\"acme\",\"key\":\"X\"}\n\n")
	time.Sleep(50 * time.Millisecond)
	n := len(f.streamRequests())
	f.dropStreams()
	if !waitFor(func() bool { return len(f.streamRequests()) > n }, 5*time.Second) {
		t.Fatal("did not reconnect")
	}
	ids := f.streamRequests()
	if ids[len(ids)-1] != "77" {
		t.Fatalf("Last-Event-ID %q, want 77", ids[len(ids)-1])
	}
	if !c.WaitForStream(ctx) {
		t.Fatal("stream not live again")
	}
}

func TestServerWithoutEventsMeansTTLOnly(t *testing.T) {
	f := newFake(t, false, false)
	c := mustNew(t, f.srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if c.WaitForStream(ctx) || c.StreamState() != "unsupported" {
		t.Fatalf("stream %s", c.StreamState())
	}
	_, _ = c.GetSecret(ctx, "acme", "STRIPE_KEY")
	_, _ = c.GetSecret(ctx, "acme", "STRIPE_KEY")
	if f.gets.Load() != 1 {
		t.Fatalf("%d requests, want 1", f.gets.Load())
	}
}

func TestStaleServedWhileUnreachable(t *testing.T) {
	f := newFake(t, false, false)
	logs := &logCapture{}
	c := mustNew(t, f.srv.URL, WithCacheTTL(time.Second), WithMaxStale(time.Minute), WithoutEvents(), WithLogger(logs.log))
	strict := mustNew(t, f.srv.URL, WithCacheTTL(time.Second), WithMaxStale(0), WithoutEvents())
	ctx := context.Background()
	if v, err := c.GetSecret(ctx, "acme", "STRIPE_KEY"); err != nil || v != unitValue {
		t.Fatal(err)
	}
	if _, err := strict.GetSecret(ctx, "acme", "STRIPE_KEY"); err != nil {
		t.Fatal(err)
	}
	f.close()
	time.Sleep(1100 * time.Millisecond)
	s, err := c.GetSecretEntry(ctx, "acme", "STRIPE_KEY")
	if err != nil || s.Value() != unitValue || s.Source != SourceStale || !s.Stale() {
		t.Fatalf("stale read: %v %v", s, err)
	}
	if c.Stats().Stale != 1 || !strings.Contains(logs.text(), "warn server unreachable: serving a stale") {
		t.Fatal("the stale answer was not reported")
	}
	if _, err := c.GetSecret(ctx, "acme", "OTHER"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("want Unavailable, got %v", err)
	}
	if _, err := strict.GetSecret(ctx, "acme", "STRIPE_KEY"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("strict: want Unavailable, got %v", err)
	}
	if strings.Contains(logs.text(), unitValue) || strings.Contains(logs.text(), "SUPERSECRET") {
		t.Fatal("a value or token in the log")
	}
}

func TestNothingSecretInPrintedValues(t *testing.T) {
	f := newFake(t, false, false)
	c := mustNew(t, f.srv.URL, WithoutEvents())
	s, err := c.GetSecretEntry(context.Background(), "acme", "STRIPE_KEY")
	if err != nil {
		t.Fatal(err)
	}
	_, ferr := c.GetSecret(context.Background(), "globex", "STRIPE_KEY")
	raw, _ := json.Marshal(s)
	shown := fmt.Sprintf("%v %+v %#v %s %q | %v %+v %#v %s | %v %+v | %+v %s", s, s, s, s, s, c, c, c, c, *c, *c, ferr, raw)
	if strings.Contains(shown, unitValue) || strings.Contains(shown, "SUPERSECRET") {
		t.Fatalf("printed: %s", shown)
	}
	if !strings.Contains(shown, "[redacted]") || s.Value() != unitValue {
		t.Fatal("value not reachable through Value() or not marked redacted")
	}
}

func TestGetSecretsUsesBatchGetWhenTheServerHasIt(t *testing.T) {
	for _, batch := range []bool{true, false} {
		f := newFake(t, false, false)
		f.batch = batch
		f.secrets["acme/OTHER_KEY"] = [2]interface{}{"other_value", int64(4)}
		c := mustNew(t, f.srv.URL, WithoutEvents())
		ctx := context.Background()
		got, err := c.GetSecrets(ctx, "acme", []string{"STRIPE_KEY", "MISSING", "OTHER_KEY"})
		if err != nil || len(got) != 2 || got["STRIPE_KEY"] != unitValue || got["OTHER_KEY"] != "other_value" {
			t.Fatalf("batch=%v: %d keys, %v", batch, len(got), err)
		}
		want := map[bool][2]int64{true: {1, 2}, false: {4, 6}}[batch]
		if n := c.Stats().Requests; n != want[0] {
			t.Fatalf("batch=%v: %d requests, want %d", batch, n, want[0])
		}
		if s, _ := c.GetSecretEntry(ctx, "acme", "OTHER_KEY"); s.Source != SourceCache {
			t.Fatalf("batch=%v: OTHER_KEY not cached", batch)
		}
		// A server without batch-get is not asked again.
		if _, err := c.GetSecrets(ctx, "acme", []string{"STRIPE_KEY", "MISSING", "ALSO_MISSING"}); err != nil {
			t.Fatal(err)
		}
		if n := c.Stats().Requests; n != want[1] {
			t.Fatalf("batch=%v: %d requests, want %d", batch, n, want[1])
		}
		if n, w := f.batches.Load(), map[bool]int64{true: 2, false: 1}[batch]; n != w {
			t.Fatalf("batch=%v: %d batch-gets, want %d", batch, n, w)
		}
	}
}

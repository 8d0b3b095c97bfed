// Package tenantvault is the Go client of tenant-vault: per-tenant secrets with an in-process
// cache (TTL 60 s by default) that the server's event stream keeps fresh, coalesced misses,
// stale serving while the server is unreachable, and typed errors. Standard library only.
//
//	c, err := tenantvault.New("http://127.0.0.1:8210", token)
//	defer c.Close()
//	key, err := c.GetSecret(ctx, "acme", "STRIPE_KEY")
package tenantvault

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	maxTTL     = 3600 * time.Second // the server's TENANT_VAULT_CACHE_TTL_SECS maximum
	batchLimit = 100                // the server's default batch-get size
	redacted   = "[redacted]"
)

// Source tells where a read came from.
type Source string

const (
	SourceServer Source = "server" // fetched now
	SourceCache  Source = "cache"  // in-process hit
	SourceStale  Source = "stale"  // the server was unreachable: an expired entry within MaxStale
)

// Secret is one read. Printing it (any fmt verb) never shows the value; JSON leaves it out.
type Secret struct {
	Tenant       string
	Key          string
	Version      int64
	UpdatedAt    string
	Source       Source
	ServerSource string        // the server's x-secret-source when fetched
	Age          time.Duration // since it was fetched
	value        string
}

// Value is the secret's plaintext.
func (s Secret) Value() string { return s.value }

// Stale reports whether the value was served from an expired entry.
func (s Secret) Stale() bool { return s.Source == SourceStale }

func (s Secret) String() string {
	return fmt.Sprintf("Secret(%s/%s v%d %s value=%s)", s.Tenant, s.Key, s.Version, s.Source, redacted)
}

// GoString keeps %#v from printing the value.
func (s Secret) GoString() string { return s.String() }

// Format keeps every verb (%v, %+v, %s, %q, ...) from printing the value.
func (s Secret) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, s.String()) }

// SecretInfo is a listed secret: name and version, never the value.
type SecretInfo struct {
	Key       string `json:"key"`
	Version   int64  `json:"version"`
	UpdatedAt string `json:"updated_at"`
}

// Stats are the client's counters.
type Stats struct {
	Requests int64 // HTTP requests sent (the event stream not counted)
	Hits     int64
	Misses   int64
	Stale    int64
	Entries  int
	Stream   string
}

// Option configures New.
type Option func(*state) error

// WithCacheTTL sets the cache TTL: 0 disables the cache, at most 3600 s (default 60 s).
func WithCacheTTL(d time.Duration) Option {
	return func(s *state) error {
		if d < 0 || d > maxTTL {
			return &Error{Kind: KindInvalidRequest, Code: "invalid_option", Message: "cache TTL must be from 0 (off) to 3600 s"}
		}
		s.ttl = d
		return nil
	}
}

// WithMaxStale sets how long past its TTL an entry may be served while the server is
// unreachable (default 300 s; 0: never).
func WithMaxStale(d time.Duration) Option {
	return func(s *state) error {
		if d < 0 {
			return &Error{Kind: KindInvalidRequest, Code: "invalid_option", Message: "max stale must be 0 or more"}
		}
		s.maxStale = d
		return nil
	}
}

// WithoutEvents turns off the GET /v1/events subscription (entries then live for their TTL).
func WithoutEvents() Option { return func(s *state) error { s.events = false; return nil } }

// WithHTTPClient sets the HTTP client for requests and the event stream (a Timeout on it
// also cuts the stream, which then reconnects and resumes with Last-Event-ID).
func WithHTTPClient(hc *http.Client) Option { return func(s *state) error { s.hc = hc; return nil } }

// WithTimeout sets the per-request timeout (default 10 s; not applied to the event stream).
func WithTimeout(d time.Duration) Option { return func(s *state) error { s.timeout = d; return nil } }

// WithMaxEntries bounds the cache (default 100,000).
func WithMaxEntries(n int) Option { return func(s *state) error { s.maxEntries = n; return nil } }

// WithStreamIdleTimeout reconnects the stream after this much silence (default 45 s; the
// server sends a heartbeat every 15 s).
func WithStreamIdleTimeout(d time.Duration) Option {
	return func(s *state) error { s.idle = d; return nil }
}

// WithLogger receives the client's log lines (level: debug, info, warn, error). The lines
// name tenants and keys, never values or tokens. Default: none.
func WithLogger(f func(level, msg string)) Option {
	return func(s *state) error { s.log = f; return nil }
}

// Client is safe for concurrent use. Make one per process and Close it on shutdown.
type Client struct {
	s *state // behind a pointer so printing a Client never shows the token
}

type cacheKey struct{ tenant, key string }

type entry struct {
	value, updatedAt, serverSource string
	version                        int64
	fetchedAt, freshUntil          time.Time
}

type flight struct {
	done        chan struct{}
	secret      Secret
	err         error
	invalidated bool // under state.mu
}

type state struct {
	base       string
	token      string
	tokenID    string
	ttl        time.Duration
	maxStale   time.Duration
	timeout    time.Duration
	idle       time.Duration
	maxEntries int
	events     bool
	hc         *http.Client
	log        func(level, msg string)

	mu       sync.RWMutex
	cache    map[cacheKey]*entry
	inflight map[cacheKey]*flight
	epoch    uint64 // bumped on every invalidation; an older batch result is not cached

	requests, hits, misses, stale atomic.Int64
	batchGet                      atomic.Int32 // 0 unknown, 1 yes, -1 no

	streamMu    sync.Mutex
	streamState string
	streamCh    chan struct{} // closed and replaced on every state change
	lastEventID string
	everLive    bool // the event stream has been live at least once (stream goroutine only)
	ctx         context.Context
	cancel      context.CancelFunc
	wg          sync.WaitGroup
}

var tokenIDRe = regexp.MustCompile(`^tvt_([^_]+)_`)

// New makes a client for the server at baseURL (e.g. "http://127.0.0.1:8210") with a tenant,
// service or admin token, and starts its event stream subscription.
func New(baseURL, token string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, &Error{Kind: KindInvalidRequest, Code: "invalid_url", Message: "url must be an http(s) URL"}
	}
	if token == "" {
		return nil, &Error{Kind: KindInvalidRequest, Code: "invalid_token", Message: "token must not be empty"}
	}
	s := &state{
		base:       strings.TrimRight(baseURL, "/"),
		token:      token,
		ttl:        60 * time.Second,
		maxStale:   300 * time.Second,
		timeout:    10 * time.Second,
		idle:       45 * time.Second,
		maxEntries: 100000,
		events:     true,
		hc:         http.DefaultClient,
		log:        func(string, string) {},
		cache:      map[cacheKey]*entry{},
		inflight:   map[cacheKey]*flight{},
		streamCh:   make(chan struct{}),
	}
	if m := tokenIDRe.FindStringSubmatch(token); m != nil {
		s.tokenID = normalizeID(m[1])
	}
	for _, o := range opts {
		if err := o(s); err != nil {
			return nil, err
		}
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.streamState = "disabled"
	// Without a cache there is nothing for the stream to keep fresh.
	if s.events && s.ttl > 0 {
		s.streamState = "connecting"
		s.wg.Add(1)
		go s.runStream()
	}
	return &Client{s: s}, nil
}

func (c *Client) String() string {
	return fmt.Sprintf("tenantvault.Client(%s, ttl=%s, stream=%s)", c.s.base, c.s.ttl, c.StreamState())
}

// GoString keeps %#v short and token-free.
func (c *Client) GoString() string { return c.String() }

// GetSecret returns the value of key for tenant.
func (c *Client) GetSecret(ctx context.Context, tenant, key string) (string, error) {
	s := c.s
	s.mu.RLock()
	e := s.cache[cacheKey{tenant, key}]
	s.mu.RUnlock()
	if e != nil && time.Now().Before(e.freshUntil) {
		s.hits.Add(1)
		return e.value, nil
	}
	sec, err := c.GetSecretEntry(ctx, tenant, key)
	return sec.value, err
}

// GetSecretEntry is GetSecret with version and source (server, cache, stale).
func (c *Client) GetSecretEntry(ctx context.Context, tenant, key string) (Secret, error) {
	s := c.s
	if err := checkNames(tenant, key); err != nil {
		return Secret{}, err
	}
	ck := cacheKey{tenant, key}
	now := time.Now()
	s.mu.Lock()
	if e := s.cache[ck]; e != nil && now.Before(e.freshUntil) {
		s.mu.Unlock()
		s.hits.Add(1)
		return e.secret(tenant, key, SourceCache, now), nil
	}
	s.misses.Add(1)
	f, waiting := s.inflight[ck]
	if !waiting {
		f = &flight{done: make(chan struct{})}
		s.inflight[ck] = f
		// Concurrent misses of one key share this request; it is not tied to one caller's ctx.
		go func() {
			f.secret, f.err = s.load(tenant, key, ck, f)
			s.mu.Lock()
			delete(s.inflight, ck)
			s.mu.Unlock()
			close(f.done)
		}()
	}
	s.mu.Unlock()
	select {
	case <-f.done:
		return f.secret, f.err
	case <-ctx.Done():
		return Secret{}, ctx.Err()
	}
}

func (s *state) load(tenant, key string, ck cacheKey, f *flight) (Secret, error) {
	var body struct {
		Value     string `json:"value"`
		Version   int64  `json:"version"`
		UpdatedAt string `json:"updated_at"`
	}
	hdr, err := s.do(context.Background(), http.MethodGet, secretPath(tenant, key), nil, &body, tenant, key)
	if err != nil {
		var te *Error
		if errors.As(err, &te) {
			switch te.Kind {
			case KindUnavailable:
				if sec, ok := s.staleEntry(ck, tenant, key); ok {
					return sec, nil
				}
			case KindNotFound, KindForbidden, KindUnauthenticated:
				s.mu.Lock()
				delete(s.cache, ck)
				s.mu.Unlock()
			}
		}
		return Secret{}, err
	}
	e := s.newEntry(body.Value, body.Version, body.UpdatedAt, hdr.Get("x-secret-source"))
	s.mu.Lock()
	if !f.invalidated {
		s.store(ck, e)
	}
	s.mu.Unlock()
	return e.secret(tenant, key, SourceServer, e.fetchedAt), nil
}

func (s *state) newEntry(value string, version int64, updatedAt, serverSource string) *entry {
	now := time.Now()
	return &entry{value: value, version: version, updatedAt: updatedAt, serverSource: serverSource, fetchedAt: now, freshUntil: now.Add(s.ttl)}
}

func (e *entry) secret(tenant, key string, src Source, now time.Time) Secret {
	age := now.Sub(e.fetchedAt)
	if age < 0 {
		age = 0
	}
	return Secret{Tenant: tenant, Key: key, Version: e.version, UpdatedAt: e.updatedAt, Source: src, ServerSource: e.serverSource, Age: age, value: e.value}
}

// store puts an entry in the cache; the caller holds s.mu.
func (s *state) store(ck cacheKey, e *entry) {
	if s.ttl == 0 || s.ctx.Err() != nil {
		return
	}
	if _, ok := s.cache[ck]; !ok && len(s.cache) >= s.maxEntries {
		for k := range s.cache { // any one: Go maps have no order
			delete(s.cache, k)
			break
		}
	}
	s.cache[ck] = e
}

func (s *state) staleEntry(ck cacheKey, tenant, key string) (Secret, bool) {
	s.mu.RLock()
	e := s.cache[ck]
	s.mu.RUnlock()
	now := time.Now()
	if e == nil || now.After(e.freshUntil.Add(s.maxStale)) {
		return Secret{}, false
	}
	s.stale.Add(1)
	sec := e.secret(tenant, key, SourceStale, now)
	s.log("warn", fmt.Sprintf("server unreachable: serving a stale cached entry for %s/%s (version %d, %s old)", tenant, key, e.version, sec.Age.Round(time.Second)))
	return sec, true
}

// GetSecrets reads several keys of one tenant: a map of the keys that exist (missing keys
// are left out). Misses cost one batch-get when the server has it, else parallel reads.
func (c *Client) GetSecrets(ctx context.Context, tenant string, keys []string) (map[string]string, error) {
	s := c.s
	out := map[string]string{}
	var misses []string
	seen := map[string]bool{}
	now := time.Now()
	for _, k := range keys {
		if seen[k] {
			continue
		}
		seen[k] = true
		if err := checkNames(tenant, k); err != nil {
			return nil, err
		}
		s.mu.RLock()
		e := s.cache[cacheKey{tenant, k}]
		s.mu.RUnlock()
		if e != nil && now.Before(e.freshUntil) {
			s.hits.Add(1)
			out[k] = e.value
		} else {
			misses = append(misses, k)
		}
	}
	rest := misses
	if len(misses) > 1 && s.batchGet.Load() >= 0 {
		rest = nil
		for i := 0; i < len(misses); i += batchLimit {
			end := i + batchLimit
			if end > len(misses) {
				end = len(misses)
			}
			left, err := s.batch(ctx, tenant, misses[i:end], out)
			if err != nil {
				return nil, err
			}
			rest = append(rest, left...)
		}
	}
	if len(rest) > 0 {
		type result struct {
			key, value string
			err        error
		}
		ch := make(chan result, len(rest))
		for _, k := range rest {
			go func(k string) {
				sec, err := c.GetSecretEntry(ctx, tenant, k)
				ch <- result{k, sec.value, err}
			}(k)
		}
		var firstErr error
		for range rest {
			r := <-ch
			switch {
			case r.err == nil:
				out[r.key] = r.value
			case errors.Is(r.err, ErrNotFound):
			case firstErr == nil:
				firstErr = r.err
			}
		}
		if firstErr != nil {
			return nil, firstErr
		}
	}
	return out, nil
}

// batch runs one batch-get and returns the keys left for key-by-key reads.
func (s *state) batch(ctx context.Context, tenant string, keys []string, out map[string]string) ([]string, error) {
	type item struct {
		Tenant string `json:"tenant"`
		Key    string `json:"key"`
	}
	req := struct {
		Items []item `json:"items"`
	}{}
	for _, k := range keys {
		req.Items = append(req.Items, item{tenant, k})
	}
	var res struct {
		Results []struct {
			Tenant    string  `json:"tenant"`
			Key       string  `json:"key"`
			Value     *string `json:"value"`
			Version   int64   `json:"version"`
			UpdatedAt string  `json:"updated_at"`
			Source    string  `json:"source"`
			Error     *struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		} `json:"results"`
	}
	s.mu.RLock()
	epoch := s.epoch
	s.mu.RUnlock()
	if _, err := s.do(ctx, http.MethodPost, "/v1/secrets/batch-get", req, &res, tenant, ""); err != nil {
		var te *Error
		if errors.As(err, &te) {
			if (te.Status == 404 && te.Code != "secret_not_found" && te.Code != "tenant_not_found") || te.Status == 405 {
				s.batchGet.Store(-1)
				s.log("debug", "server has no batch-get: reading keys one by one")
				return keys, nil
			}
			if te.Kind == KindUnavailable {
				return keys, nil
			}
		}
		return nil, err
	}
	s.batchGet.Store(1)
	s.misses.Add(int64(len(keys)))
	var rest []string
	for _, r := range res.Results {
		ck := cacheKey{r.Tenant, r.Key}
		if r.Error != nil {
			if r.Error.Code == "secret_not_found" {
				s.mu.Lock()
				delete(s.cache, ck)
				s.mu.Unlock()
				continue
			}
			status, ok := statusOfCode[r.Error.Code]
			if !ok {
				status = 500
			}
			if status == 503 {
				rest = append(rest, r.Key)
				continue
			}
			return nil, &Error{Kind: kindOfStatus(status), Status: status, Code: r.Error.Code, Message: r.Error.Message, Tenant: r.Tenant, Key: r.Key}
		}
		if r.Value == nil {
			continue
		}
		e := s.newEntry(*r.Value, r.Version, r.UpdatedAt, r.Source)
		s.mu.Lock()
		if _, busy := s.inflight[ck]; !busy && epoch == s.epoch {
			s.store(ck, e)
		}
		s.mu.Unlock()
		out[r.Key] = *r.Value
	}
	return rest, nil
}

// ListSecrets returns the names and versions of a tenant's secrets (never values; not cached).
func (c *Client) ListSecrets(ctx context.Context, tenant string) ([]SecretInfo, error) {
	if err := checkNames(tenant, "x"); err != nil {
		return nil, err
	}
	var body struct {
		Secrets []SecretInfo `json:"secrets"`
	}
	if _, err := c.s.do(ctx, http.MethodGet, "/v1/tenants/"+url.PathEscape(tenant)+"/secrets", nil, &body, tenant, ""); err != nil {
		return nil, err
	}
	return body.Secrets, nil
}

// SetSecret writes a value and returns the new version.
func (c *Client) SetSecret(ctx context.Context, tenant, key, value string) (int64, error) {
	return c.set(ctx, tenant, key, value, nil)
}

// SetSecretCAS writes a value only if the current version is expected (0: only if absent);
// otherwise the error is KindConflict.
func (c *Client) SetSecretCAS(ctx context.Context, tenant, key, value string, expected int64) (int64, error) {
	return c.set(ctx, tenant, key, value, &expected)
}

func (c *Client) set(ctx context.Context, tenant, key, value string, cas *int64) (int64, error) {
	if err := checkNames(tenant, key); err != nil {
		return 0, err
	}
	req := struct {
		Value string `json:"value"`
		Cas   *int64 `json:"cas,omitempty"`
	}{value, cas}
	var res struct {
		Version int64 `json:"version"`
	}
	_, err := c.s.do(ctx, http.MethodPut, secretPath(tenant, key), req, &res, tenant, key)
	c.s.drop(cacheKey{tenant, key})
	return res.Version, err
}

// DeleteSecret deletes a secret (KindNotFound when there is none).
func (c *Client) DeleteSecret(ctx context.Context, tenant, key string) error {
	if err := checkNames(tenant, key); err != nil {
		return err
	}
	_, err := c.s.do(ctx, http.MethodDelete, secretPath(tenant, key), nil, nil, tenant, key)
	c.s.drop(cacheKey{tenant, key})
	return err
}

// Invalidate drops one entry (tenant and key), a tenant's entries (key ""), or all ("", "").
func (c *Client) Invalidate(tenant, key string) {
	switch {
	case tenant == "":
		c.s.dropAll()
	case key == "":
		c.s.dropTenant(tenant)
	default:
		c.s.drop(cacheKey{tenant, key})
	}
}

// Stats returns the client's counters.
func (c *Client) Stats() Stats {
	s := c.s
	s.mu.RLock()
	n := len(s.cache)
	s.mu.RUnlock()
	return Stats{Requests: s.requests.Load(), Hits: s.hits.Load(), Misses: s.misses.Load(), Stale: s.stale.Load(), Entries: n, Stream: c.StreamState()}
}

// Close stops the event stream and forgets the cache.
func (c *Client) Close() error {
	s := c.s
	s.cancel()
	s.setStream("closed")
	s.wg.Wait()
	s.dropAll()
	return nil
}

func (s *state) drop(ck cacheKey) {
	s.mu.Lock()
	s.epoch++
	delete(s.cache, ck)
	if f := s.inflight[ck]; f != nil {
		f.invalidated = true
	}
	s.mu.Unlock()
}

// dropOlder drops an entry older than an announced version. An event may arrive after our
// own read of that version: an entry already that new stays (a read in flight may predate
// it and is not cached).
func (s *state) dropOlder(ck cacheKey, version *int64) {
	s.mu.Lock()
	if e := s.cache[ck]; e != nil && version != nil && e.version >= *version {
		if f := s.inflight[ck]; f != nil {
			f.invalidated = true
		}
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	s.drop(ck)
}

func (s *state) dropTenant(tenant string) {
	s.mu.Lock()
	s.epoch++
	for ck := range s.cache {
		if ck.tenant == tenant {
			delete(s.cache, ck)
		}
	}
	for ck, f := range s.inflight {
		if ck.tenant == tenant {
			f.invalidated = true
		}
	}
	s.mu.Unlock()
}

func (s *state) dropAll() {
	s.mu.Lock()
	s.epoch++
	s.cache = map[cacheKey]*entry{}
	for _, f := range s.inflight {
		f.invalidated = true
	}
	s.mu.Unlock()
}

// normalizeID: the token text holds the uuid without dashes; events may carry it with them.
func normalizeID(id string) string { return strings.ToLower(strings.ReplaceAll(id, "-", "")) }

func checkNames(tenant, key string) error {
	if tenant == "" || key == "" {
		return &Error{Kind: KindInvalidRequest, Code: "invalid_request", Message: "tenant and key must not be empty", Tenant: tenant, Key: key}
	}
	return nil
}

func secretPath(tenant, key string) string {
	return "/v1/tenants/" + url.PathEscape(tenant) + "/secrets/" + url.PathEscape(key)
}

// do sends one request; 2xx answers decode into out, others become *Error.
func (s *state) do(ctx context.Context, method, path string, in, out interface{}, tenant, key string) (http.Header, error) {
	s.requests.Add(1)
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var body io.Reader
	if in != nil {
		raw, err := json.Marshal(in)
		if err != nil {
			return nil, &Error{Kind: KindInvalidRequest, Code: "invalid_request", Message: "cannot encode the request", Tenant: tenant, Key: key}
		}
		body = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.base+path, body)
	if err != nil {
		return nil, &Error{Kind: KindInvalidRequest, Code: "invalid_request", Message: "cannot build the request", Tenant: tenant, Key: key}
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := s.hc.Do(req)
	if err != nil {
		// Only a short reason: the transport error names the URL, never the token.
		reason := "connection failed"
		if errors.Is(err, context.DeadlineExceeded) {
			reason = "timed out"
		} else if errors.Is(err, context.Canceled) {
			reason = "cancelled"
		}
		s.log("debug", fmt.Sprintf("request failed: %s %s/%s (%s)", method, tenant, key, reason))
		return nil, &Error{Kind: KindUnavailable, Code: "unreachable", Message: "cannot reach tenant-vault (" + reason + ")", Tenant: tenant, Key: key}
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, 16<<20))
	if err != nil {
		return nil, &Error{Kind: KindUnavailable, Code: "unreachable", Message: "connection lost while reading the answer", Tenant: tenant, Key: key}
	}
	s.log("debug", fmt.Sprintf("request %s %s/%s: %d", method, tenant, key, res.StatusCode))
	if res.StatusCode >= 200 && res.StatusCode < 300 {
		if out != nil && len(raw) > 0 {
			if err := json.Unmarshal(raw, out); err != nil {
				return nil, &Error{Kind: KindServerError, Status: res.StatusCode, Code: "invalid_answer", Message: "malformed JSON answer", Tenant: tenant, Key: key}
			}
		}
		return res.Header, nil
	}
	var eb struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	_ = json.Unmarshal(raw, &eb)
	code, msg := eb.Error.Code, eb.Error.Message
	if code == "" {
		code = "http_" + strconv.Itoa(res.StatusCode)
	}
	if msg == "" {
		msg = "HTTP " + strconv.Itoa(res.StatusCode)
	}
	e := &Error{Kind: kindOfStatus(res.StatusCode), Status: res.StatusCode, Code: code, Message: msg, Tenant: tenant, Key: key}
	if e.Kind == KindRateLimited {
		e.RetryAfter = parseRetryAfter(res.Header.Get("Retry-After"))
	}
	return nil, e
}

func parseRetryAfter(h string) time.Duration {
	h = strings.TrimSpace(h)
	if n, err := strconv.Atoi(h); err == nil {
		if n < 1 {
			n = 1
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil {
		if d := time.Until(t).Round(time.Second); d >= time.Second {
			return d
		}
	}
	return time.Second
}

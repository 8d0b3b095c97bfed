package tenantvault

// Runs clients/conformance/*.json against a real `tenant-vault dev` (see ../conformance/README.md).
// Binary: $TENANT_VAULT_BIN, else ${CARGO_TARGET_DIR:-<repo>/target}/release/tenant-vault
// (built with `cargo build --release` when missing).

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

type scenario struct {
	Name     string   `json:"name"`
	Requires []string `json:"requires"`
	Tenants  []string `json:"tenants"`
	Steps    []step   `json:"steps"`
}

type step struct {
	Op              string         `json:"op"`
	Name            string         `json:"name"`
	Client          string         `json:"client"`
	Token           string         `json:"token"`
	Tenant          string         `json:"tenant"`
	Key             string         `json:"key"`
	Keys            []string       `json:"keys"`
	Value           string         `json:"value"`
	Cas             *int64         `json:"cas"`
	CacheTTLSeconds *int           `json:"cache_ttl_seconds"`
	MaxStaleSeconds *int           `json:"max_stale_seconds"`
	Events          *bool          `json:"events"`
	WithinMS        int            `json:"within_ms"`
	MaxRequests     int            `json:"max_requests"`
	MS              int            `json:"ms"`
	Count           int            `json:"count"`
	Step            *step          `json:"step"`
	Expect          map[string]any `json:"expect"`
	// service_token: a list of logical tenants, or "*".
	Tenants    json.RawMessage `json:"tenants"`
	Scopes     []string        `json:"scopes"`
	KeyPattern *string         `json:"key_pattern"`
}

// devServer is one `tenant-vault dev` process.
type devServer struct {
	dataDir, addr, adminToken string
	cmd                       *exec.Cmd
	done                      chan struct{}
	mu                        sync.Mutex
	output                    bytes.Buffer
}

func serverBinary(t *testing.T) string {
	if b := os.Getenv("TENANT_VAULT_BIN"); b != "" {
		return b
	}
	repo, _ := filepath.Abs(filepath.Join("..", ".."))
	target := filepath.Join(repo, "target")
	if d := os.Getenv("CARGO_TARGET_DIR"); d != "" {
		target = d
		if !filepath.IsAbs(d) {
			target = filepath.Join(repo, d)
		}
	}
	bin := filepath.Join(target, "release", "tenant-vault")
	if _, err := os.Stat(bin); err != nil {
		cmd := exec.Command("cargo", "build", "--release", "--bin", "tenant-vault")
		cmd.Dir, cmd.Stdout, cmd.Stderr = repo, os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("cargo build --release: %v", err)
		}
	}
	return bin
}

func (d *devServer) start(t *testing.T) {
	if d.dataDir == "" {
		dir, err := os.MkdirTemp("", "tv-conformance-")
		if err != nil {
			t.Fatal(err)
		}
		_ = os.Chmod(dir, 0o755) // the postgres user (when run as root) must reach it
		d.dataDir = dir
	}
	envFile := filepath.Join(d.dataDir, "dev.env")
	_ = os.Remove(envFile)
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "DATABASE_URL=") || strings.HasPrefix(kv, "INFISICAL_") || strings.HasPrefix(kv, "TENANT_VAULT_") {
			continue
		}
		env = append(env, kv)
	}
	d.cmd = exec.Command(serverBinary(t), "dev", "--data-dir", d.dataDir, "--listen", "127.0.0.1:0")
	d.cmd.Env = append(env, "TENANT_VAULT_LOG=info")
	pr, pw := io.Pipe()
	d.cmd.Stdout, d.cmd.Stderr = pw, pw
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			d.mu.Lock()
			d.output.WriteString(sc.Text() + "\n")
			d.mu.Unlock()
		}
	}()
	d.done = make(chan struct{})
	go func() { _ = d.cmd.Wait(); pw.Close(); close(d.done) }()
	deadline := time.Now().Add(120 * time.Second)
	for {
		select {
		case <-d.done:
			t.Fatalf("tenant-vault dev exited early:\n%s", d.tail())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("tenant-vault dev did not become ready:\n%s", d.tail())
		}
		if raw, err := os.ReadFile(envFile); err == nil {
			for _, line := range strings.Split(string(raw), "\n") {
				if v := strings.TrimPrefix(line, "TENANT_VAULT_ADDR="); v != line {
					d.addr = v
				}
				if v := strings.TrimPrefix(line, "TENANT_VAULT_ADMIN_TOKEN="); v != line {
					d.adminToken = v
				}
			}
			if res, err := http.Get(d.addr + "/readyz"); err == nil {
				res.Body.Close()
				if res.StatusCode == 200 {
					return
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (d *devServer) tail() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.output.String()
	if len(s) > 3000 {
		s = s[len(s)-3000:]
	}
	return s
}

func (d *devServer) running() bool {
	if d.done == nil {
		return false
	}
	select {
	case <-d.done:
		return false
	default:
		return true
	}
}

func (d *devServer) stop() {
	if !d.running() {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(20 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
	}
}

func (d *devServer) call(method, path, token string, in, out any) (int, http.Header, error) {
	var body io.Reader
	if in != nil {
		raw, _ := json.Marshal(in)
		body = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, d.addr+path, body)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	if res.StatusCode >= 300 {
		return res.StatusCode, res.Header, fmt.Errorf("%s %s: %d %.200s", method, path, res.StatusCode, raw)
	}
	if out != nil {
		_ = json.Unmarshal(raw, out)
	}
	return res.StatusCode, res.Header, nil
}

func (d *devServer) tenantWithToken(t *testing.T, slug string) string {
	if _, _, err := d.call("POST", "/v1/admin/tenants", d.adminToken, map[string]string{"slug": slug, "name": slug}, nil); err != nil {
		t.Fatal(err)
	}
	var tok struct {
		Token string `json:"token"`
	}
	if _, _, err := d.call("POST", "/v1/admin/tenants/"+slug+"/tokens", d.adminToken, map[string]string{"description": "conformance"}, &tok); err != nil {
		t.Fatal(err)
	}
	return tok.Token
}

// serviceToken makes a service token for the given tenant slugs (a []string, or "*").
func (d *devServer) serviceToken(tenants any, scopes []string, keyPattern *string) (string, error) {
	body := map[string]any{"tenants": tenants, "description": "conformance"}
	if scopes != nil {
		body["scopes"] = scopes
	}
	if keyPattern != nil {
		body["key_pattern"] = *keyPattern
	}
	var tok struct {
		Token string `json:"token"`
	}
	if _, _, err := d.call("POST", "/v1/admin/service-tokens", d.adminToken, body, &tok); err != nil {
		return "", err
	}
	return tok.Token, nil
}

func (d *devServer) features(t *testing.T) map[string]bool {
	out := map[string]bool{}
	slug := "cf-probe-" + randSuffix()
	token := d.tenantWithToken(t, slug)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", d.addr+"/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if res, err := http.DefaultClient.Do(req); err == nil {
		if res.StatusCode != 404 && res.StatusCode != 405 {
			out["events"] = true
		}
		cancel()
		res.Body.Close()
	}
	cancel()
	status, _, _ := d.call("POST", "/v1/secrets/batch-get", token, map[string]any{"items": []map[string]string{{"tenant": slug, "key": "PROBE"}}}, nil)
	if status != 0 && status != 404 && status != 405 {
		out["batch_get"] = true
	}
	_, hdr, _ := d.call("GET", "/v1/tenants/"+slug+"/secrets/PROBE", token, nil, nil)
	if hdr != nil && hdr.Get("RateLimit-Policy") != "" {
		out["rate_limits"] = true
	}
	// An empty body is a 400 where service tokens exist; an older server has no such route (404).
	status, _, _ = d.call("POST", "/v1/admin/service-tokens", d.adminToken, map[string]any{}, nil)
	if status != 0 && status != 404 && status != 405 {
		out["service_tokens"] = true
	}
	return out
}

func randSuffix() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func TestConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("conformance needs a tenant-vault dev server (not in -short)")
	}
	files, _ := filepath.Glob(filepath.Join("..", "conformance", "*.json"))
	sort.Strings(files)
	if len(files) == 0 {
		t.Fatal("no scenarios found")
	}
	srv := &devServer{}
	srv.start(t)
	defer func() {
		srv.stop()
		if srv.dataDir != "" {
			os.RemoveAll(srv.dataDir)
		}
	}()
	features := srv.features(t)
	t.Logf("conformance: server features: %v", features)
	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var sc scenario
		if err := json.Unmarshal(raw, &sc); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		t.Run(sc.Name, func(t *testing.T) {
			if !srv.running() {
				srv.start(t)
				features = srv.features(t)
			}
			var missing []string
			for _, f := range sc.Requires {
				if !features[f] {
					missing = append(missing, f)
				}
			}
			if len(missing) > 0 {
				reason := "server lacks " + strings.Join(missing, ", ")
				fmt.Printf("conformance: skipping %s: %s\n", sc.Name, reason)
				t.Skip(reason)
			}
			r := &runner{t: t, srv: srv, slugs: map[string]string{}, tokens: map[string]string{}, clients: map[string]*Client{}, logs: &logCapture{}}
			defer func() {
				for _, c := range r.clients {
					c.Close()
				}
			}()
			suffix := randSuffix()
			for _, name := range sc.Tenants {
				r.slugs[name] = "cf-" + suffix + "-" + name
				r.tokens[name] = srv.tenantWithToken(t, r.slugs[name])
			}
			for i, st := range sc.Steps {
				if err := r.step(st); err != nil {
					t.Fatalf("step %d (%s): %v", i+1, st.Op, err)
				}
			}
			if err := r.checkLogs(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

type runner struct {
	t          *testing.T
	srv        *devServer
	slugs      map[string]string
	tokens     map[string]string
	clients    map[string]*Client
	logs       *logCapture
	values     []string
	errs       []error
	lastSecret *Secret
}

func (r *runner) slug(name string) string {
	if s, ok := r.slugs[name]; ok {
		return s
	}
	return name
}

func (r *runner) secrets() []string {
	out := append([]string(nil), r.values...)
	for _, tok := range r.tokens {
		out = append(out, tok)
	}
	return out
}

func (r *runner) checkLogs() error {
	text := r.logs.text()
	r.srv.mu.Lock()
	serverText := r.srv.output.String()
	r.srv.mu.Unlock()
	for _, s := range r.secrets() {
		if strings.Contains(text, s) {
			return errors.New("a value or token appears in the captured client log")
		}
		if strings.Contains(serverText, s) {
			return errors.New("a value or token appears in the server's output")
		}
	}
	return nil
}

func kindName(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind.String()
	}
	return fmt.Sprintf("not a tenantvault error: %v", err)
}

// outcome checks err against expect["error"]; check runs on success.
func (r *runner) outcome(expect map[string]any, err error, check func() error) error {
	want, _ := expect["error"].(string)
	if err != nil {
		r.errs = append(r.errs, err)
		if want == "" {
			return err
		}
		if got := kindName(err); got != want {
			return fmt.Errorf("error kind %s, want %s (%v)", got, want, err)
		}
		return nil
	}
	if want != "" {
		return fmt.Errorf("expected %s, got a result", want)
	}
	return check()
}

func num(v any) int64 {
	f, _ := v.(float64)
	return int64(f)
}

func (r *runner) step(st step) error {
	ctx := context.Background()
	c := r.clients[st.Client]
	switch st.Op {
	case "write":
		r.values = append(r.values, st.Value)
		_, _, err := r.srv.call("PUT", "/v1/tenants/"+r.slug(st.Tenant)+"/secrets/"+st.Key, r.tokens[st.Tenant], map[string]string{"value": st.Value}, nil)
		return err
	case "remove":
		_, _, err := r.srv.call("DELETE", "/v1/tenants/"+r.slug(st.Tenant)+"/secrets/"+st.Key, r.tokens[st.Tenant], nil, nil)
		return err
	case "service_token":
		var tenants any = "*"
		var names []string
		if err := json.Unmarshal(st.Tenants, &names); err == nil {
			slugs := make([]string, len(names))
			for i, n := range names {
				slugs[i] = r.slug(n)
			}
			tenants = slugs
		} else if string(st.Tenants) != `"*"` {
			return fmt.Errorf("service_token: tenants must be a list or \"*\", got %s", st.Tenants)
		}
		token, err := r.srv.serviceToken(tenants, st.Scopes, st.KeyPattern)
		if err != nil {
			return err
		}
		r.tokens[st.Name] = token
		return nil
	case "client":
		token := r.tokens[st.Token]
		if st.Token == "invalid" {
			token = "tvt_00000000000000000000000000000000_notarealtoken"
		}
		opts := []Option{WithLogger(r.logs.log)}
		ttl, stale := 60, 300
		if st.CacheTTLSeconds != nil {
			ttl = *st.CacheTTLSeconds
		}
		if st.MaxStaleSeconds != nil {
			stale = *st.MaxStaleSeconds
		}
		opts = append(opts, WithCacheTTL(time.Duration(ttl)*time.Second), WithMaxStale(time.Duration(stale)*time.Second))
		if st.Events != nil && !*st.Events {
			opts = append(opts, WithoutEvents())
		}
		nc, err := New(r.srv.addr, token, opts...)
		if err != nil {
			return err
		}
		r.clients[st.Name] = nc
		return nil
	case "wait_stream_ready":
		wctx, cancel := context.WithTimeout(ctx, time.Duration(st.WithinMS)*time.Millisecond)
		defer cancel()
		if !c.WaitForStream(wctx) {
			return fmt.Errorf("stream not live (%s)", c.StreamState())
		}
		return nil
	case "get":
		s, err := c.GetSecretEntry(ctx, r.slug(st.Tenant), st.Key)
		return r.outcome(st.Expect, err, func() error {
			r.lastSecret = &s
			if v, ok := st.Expect["value"]; ok && s.Value() != v {
				return errors.New("value differs")
			}
			if v, ok := st.Expect["version"]; ok && s.Version != num(v) {
				return fmt.Errorf("version %d, want %v", s.Version, v)
			}
			if v, ok := st.Expect["source"]; ok && string(s.Source) != v {
				return fmt.Errorf("source %s, want %v", s.Source, v)
			}
			return nil
		})
	case "get_concurrent":
		errs := make(chan error, st.Count)
		for i := 0; i < st.Count; i++ {
			go func() {
				v, err := c.GetSecret(ctx, r.slug(st.Tenant), st.Key)
				if err == nil && v != st.Expect["value"] {
					err = errors.New("value differs")
				}
				errs <- err
			}()
		}
		for i := 0; i < st.Count; i++ {
			if err := <-errs; err != nil {
				return err
			}
		}
		return nil
	case "get_many":
		m, err := c.GetSecrets(ctx, r.slug(st.Tenant), st.Keys)
		return r.outcome(st.Expect, err, func() error {
			want, _ := st.Expect["values"].(map[string]any)
			if len(m) != len(want) {
				return fmt.Errorf("%d keys, want %d", len(m), len(want))
			}
			for k, v := range want {
				if m[k] != v {
					return fmt.Errorf("%s differs", k)
				}
			}
			return nil
		})
	case "set":
		r.values = append(r.values, st.Value)
		var v int64
		var err error
		if st.Cas != nil {
			v, err = c.SetSecretCAS(ctx, r.slug(st.Tenant), st.Key, st.Value, *st.Cas)
		} else {
			v, err = c.SetSecret(ctx, r.slug(st.Tenant), st.Key, st.Value)
		}
		return r.outcome(st.Expect, err, func() error {
			if want, ok := st.Expect["version"]; ok && v != num(want) {
				return fmt.Errorf("version %d, want %v", v, want)
			}
			return nil
		})
	case "delete":
		return r.outcome(st.Expect, c.DeleteSecret(ctx, r.slug(st.Tenant), st.Key), func() error { return nil })
	case "list":
		list, err := c.ListSecrets(ctx, r.slug(st.Tenant))
		return r.outcome(st.Expect, err, func() error {
			var got []string
			for _, s := range list {
				got = append(got, s.Key)
			}
			sort.Strings(got)
			want := fmt.Sprint(st.Expect["keys"])
			if fmt.Sprint(got) != want {
				return fmt.Errorf("keys %v, want %s", got, want)
			}
			return nil
		})
	case "requests":
		if got := c.Stats().Requests; got != num(st.Expect["count"]) {
			return fmt.Errorf("%d requests, want %v", got, st.Expect["count"])
		}
		return nil
	case "eventually":
		deadline := time.Now().Add(time.Duration(st.WithinMS) * time.Millisecond)
		for {
			err := r.step(*st.Step)
			if err == nil {
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("not within %d ms: %v", st.WithinMS, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	case "burst":
		for i := 0; i < st.MaxRequests; i++ {
			if _, err := c.GetSecret(ctx, r.slug(st.Tenant), st.Key); err != nil {
				r.errs = append(r.errs, err)
				if got := kindName(err); got != st.Expect["error"] {
					return fmt.Errorf("error kind %s", got)
				}
				if d, ok := RetryAfter(err); ok {
					min := num(st.Expect["min_retry_after_seconds"])
					if _, set := st.Expect["min_retry_after_seconds"]; !set {
						min = 1 // the default of the other runners
					}
					if d < time.Duration(min)*time.Second {
						return fmt.Errorf("retry after %v", d)
					}
				}
				return nil
			}
		}
		return fmt.Errorf("no error after %d requests", st.MaxRequests)
	case "stop_server":
		r.srv.stop()
		return nil
	case "sleep":
		time.Sleep(time.Duration(st.MS) * time.Millisecond)
		return nil
	case "check_redaction":
		shown := fmt.Sprintf("%v %+v %#v %s", c, c, c, c)
		if r.lastSecret != nil {
			s := *r.lastSecret
			shown += fmt.Sprintf("%v %+v %#v %s %q", s, s, s, s, s)
		}
		for _, e := range r.errs {
			shown += fmt.Sprintf("%v %+v %s", e, e, e.Error())
		}
		for _, s := range r.secrets() {
			if strings.Contains(shown, s) {
				return errors.New("a value or token appears in a printed client, secret or error")
			}
		}
		return nil
	case "check_logs":
		return r.checkLogs()
	}
	return fmt.Errorf("unknown op %s", st.Op)
}

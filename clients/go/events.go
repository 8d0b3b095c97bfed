package tenantvault

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"net/http"
	"strings"
	"time"
)

// StreamState is the event stream's state: disabled, connecting, live, down, unsupported,
// refused or closed.
func (c *Client) StreamState() string {
	c.s.streamMu.Lock()
	defer c.s.streamMu.Unlock()
	return c.s.streamState
}

// WaitForStream reports whether the event stream is (or becomes) live before ctx ends.
func (c *Client) WaitForStream(ctx context.Context) bool {
	s := c.s
	for {
		s.streamMu.Lock()
		st, ch := s.streamState, s.streamCh
		s.streamMu.Unlock()
		switch st {
		case "live":
			return true
		case "connecting", "down":
		default:
			return false
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
}

func (s *state) setStream(st string) {
	s.streamMu.Lock()
	defer s.streamMu.Unlock()
	if s.streamState == "closed" {
		return
	}
	s.streamState = st
	close(s.streamCh)
	s.streamCh = make(chan struct{})
}

func (s *state) runStream() {
	defer s.wg.Done()
	backoff := 500 * time.Millisecond
	for s.ctx.Err() == nil {
		live, stop := s.streamOnce(func() { backoff = 500 * time.Millisecond })
		if stop || s.ctx.Err() != nil {
			return
		}
		s.setStream("down")
		if live {
			s.log("warn", "event stream down: cached entries live for their TTL until it reconnects")
		}
		wait := time.Duration(float64(backoff) * (0.5 + rand.Float64()/2))
		select {
		case <-time.After(wait):
		case <-s.ctx.Done():
			return
		}
		if backoff *= 2; backoff > 30*time.Second {
			backoff = 30 * time.Second
		}
	}
}

// streamOnce holds one connection; stop is true when retrying makes no sense.
func (s *state) streamOnce(onLive func()) (live, stop bool) {
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base+"/v1/events", nil)
	if err != nil {
		return false, true
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	req.Header.Set("Accept", "text/event-stream")
	resumed := s.lastEventID != ""
	if resumed {
		req.Header.Set("Last-Event-ID", s.lastEventID)
	}
	// Heartbeats come every 15 s: silence for longer means a dead connection.
	idle := time.AfterFunc(s.idle, cancel)
	defer idle.Stop()
	res, err := s.hc.Do(req)
	if err != nil {
		s.log("debug", "event stream: connection failed")
		return false, false
	}
	defer res.Body.Close()
	switch {
	case res.StatusCode == 404 || res.StatusCode == 405:
		s.log("warn", fmt.Sprintf("the server has no event stream (GET /v1/events answered %d): cached entries live for their TTL", res.StatusCode))
		s.setStream("unsupported")
		return false, true
	case res.StatusCode == 401 || res.StatusCode == 403:
		s.log("warn", fmt.Sprintf("the event stream was refused (%d): cached entries live for their TTL", res.StatusCode))
		s.setStream("refused")
		return false, true
	case res.StatusCode != 200:
		s.log("debug", fmt.Sprintf("event stream: status %d", res.StatusCode))
		return false, false
	}
	r := bufio.NewReader(res.Body)
	var event string
	var data []string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return live, false
		}
		idle.Reset(s.idle)
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			if len(data) > 0 || event != "" {
				if event == "" {
					event = "message"
				}
				if s.dispatch(event, strings.Join(data, "\n")) {
					live = true
					onLive()
					// Without a resume point after a live stream, changes while we were away
					// are unknown: start over. (Entries cached while the first stream was
					// connecting are only a moment old.)
					if !resumed && s.everLive {
						s.dropAll()
					}
					s.everLive = true
					s.setStream("live")
				}
			}
			event, data = "", nil
			continue
		}
		if strings.HasPrefix(line, ":") {
			continue // comment, e.g. heartbeat
		}
		field, val := line, ""
		if i := strings.IndexByte(line, ':'); i >= 0 {
			field, val = line[:i], strings.TrimPrefix(line[i+1:], " ")
		}
		switch field {
		case "data":
			data = append(data, val)
		case "event":
			event = val
		case "id":
			if !strings.ContainsRune(val, 0) {
				s.lastEventID = val
			}
		}
	}
}

// dispatch applies one event; true for "ready".
func (s *state) dispatch(kind, data string) bool {
	var d struct {
		Tenant  string `json:"tenant"`
		Key     string `json:"key"`
		TokenID string `json:"token_id"`
		Version *int64 `json:"version"`
	}
	if data != "" {
		if err := json.Unmarshal([]byte(data), &d); err != nil {
			s.log("debug", "event with malformed data ignored ("+kind+")")
			return false
		}
	}
	s.log("debug", fmt.Sprintf("event %s %s/%s", kind, d.Tenant, d.Key))
	switch kind {
	case "ready":
		return true
	case "secret.written", "secret.deleted", "secret.synced":
		if d.Tenant != "" && d.Key != "" {
			s.dropOlder(cacheKey{d.Tenant, d.Key}, d.Version)
		}
	case "tenant.deleted":
		if d.Tenant != "" {
			s.dropTenant(d.Tenant)
		}
	case "token.revoked":
		// Our own token: whatever we cached we may no longer read.
		if s.tokenID != "" && normalizeID(d.TokenID) == s.tokenID {
			s.dropAll()
		}
	case "reset":
		s.dropAll()
	}
	return false
}

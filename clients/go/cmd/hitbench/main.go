// Command hitbench measures the Go client's cache hit latency: 1,000 tenants x 10 keys cached
// (primed from a local stub server), then timed GetSecret calls in random order.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	tenantvault "github.com/tenant-vault/tenant-vault/clients/go"
)

func main() {
	const tenants, keys = 1000, 10
	calls := 1000000
	if s := os.Getenv("CALLS"); s != "" {
		calls, _ = strconv.Atoi(s)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.URL.Path[strings.LastIndexByte(r.URL.Path, '/')+1:]
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]interface{}{"key": key, "value": strings.Repeat("v", 40), "version": 1, "updated_at": "2026-01-01T00:00:00Z"})
	}))
	defer srv.Close()
	c, err := tenantvault.New(srv.URL, "tvt_bench_x", tenantvault.WithoutEvents())
	if err != nil {
		panic(err)
	}
	defer c.Close()
	ctx := context.Background()
	type pair struct{ t, k string }
	var pairs []pair
	for t := 0; t < tenants; t++ {
		for k := 0; k < keys; k++ {
			pairs = append(pairs, pair{fmt.Sprintf("tenant-%d", t), fmt.Sprintf("KEY_%d", k)})
		}
	}
	for _, p := range pairs {
		if _, err := c.GetSecret(ctx, p.t, p.k); err != nil {
			panic(err)
		}
	}
	order := make([]pair, calls)
	for i := range order {
		order[i] = pairs[rand.Intn(len(pairs))]
	}
	ns := make([]int64, calls)
	for i, p := range order {
		a := time.Now()
		_, _ = c.GetSecret(ctx, p.t, p.k)
		ns[i] = int64(time.Since(a))
	}
	a := time.Now()
	for _, p := range order {
		_, _ = c.GetSecret(ctx, p.t, p.k)
	}
	mean := float64(time.Since(a)) / float64(calls)
	sort.Slice(ns, func(i, j int) bool { return ns[i] < ns[j] })
	if n := c.Stats().Requests; n != int64(len(pairs)) {
		panic(fmt.Sprintf("expected only the %d priming requests, saw %d", len(pairs), n))
	}
	out, _ := json.Marshal(map[string]interface{}{"lang": "go", "runtime": runtime.Version(), "cached": len(pairs), "calls": calls,
		"p50_ns": ns[calls/2], "p99_ns": ns[calls*99/100], "mean_ns": int64(mean)})
	fmt.Println(string(out))
}

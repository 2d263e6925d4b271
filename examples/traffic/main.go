// Command traffic sends a steady stream of GET requests to one or more
// services so that Prometheus has request metrics to judge a release by.
//
// It is meant to run inside a Swarm overlay network where services use
// endpoint_mode: dnsrr, i.e. there is no virtual IP and a service name
// resolves to one A record per running replica. Resolving once (or reusing
// connections) would pin all traffic to whichever replicas existed at that
// moment and never reach replicas started by a rolling update, so every
// request resolves afresh, picks a random address, and uses a new connection.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	maxInFlight = 50 // per target
	logEvery    = 10 * time.Second
)

type target struct {
	Host string // DNS name or IP, without port
	Port string
	Path string // always starts with "/"
}

func (t target) String() string { return net.JoinHostPort(t.Host, t.Port) + t.Path }

// parseTargets parses "host:port/path,host:port/path". The path is optional
// and defaults to "/"; the port is required because a wrong guess (80 vs
// 8080) would look like an outage rather than a config error.
func parseTargets(s string) ([]target, error) {
	var ts []target
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue // tolerate "a:1/,b:2/," and stray spaces
		}
		if strings.Contains(item, "://") {
			return nil, fmt.Errorf("target %q: give host:port/path without a scheme", item)
		}
		hostport, path := item, "/"
		if i := strings.IndexByte(item, '/'); i >= 0 {
			hostport, path = item[:i], item[i:]
		}
		host, port, err := net.SplitHostPort(hostport)
		if err != nil {
			return nil, fmt.Errorf("target %q: want host:port/path: %v", item, err)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("target %q: invalid port %q", item, port)
		}
		if host == "" {
			return nil, fmt.Errorf("target %q: empty host", item)
		}
		ts = append(ts, target{Host: host, Port: port, Path: path})
	}
	if len(ts) == 0 {
		return nil, errors.New("TARGETS is empty; want e.g. TARGETS=demo:8080/")
	}
	return ts, nil
}

type config struct {
	Targets []target
	RPS     float64
	Timeout time.Duration
}

func loadConfig(getenv func(string) string) (config, error) {
	var c config
	var err error
	if c.Targets, err = parseTargets(getenv("TARGETS")); err != nil {
		return c, err
	}
	c.RPS = 20
	if v := getenv("RPS"); v != "" {
		// Fractional rates are allowed (0.5 = one request every 2 s).
		if c.RPS, err = strconv.ParseFloat(v, 64); err != nil || !(c.RPS > 0 && c.RPS <= 10000) {
			return c, fmt.Errorf("RPS=%q: want a number in (0, 10000]", v)
		}
	}
	c.Timeout = 2 * time.Second
	if v := getenv("TIMEOUT_MS"); v != "" {
		ms, err := strconv.Atoi(v)
		if err != nil || ms <= 0 {
			return c, fmt.Errorf("TIMEOUT_MS=%q: want a positive integer", v)
		}
		c.Timeout = time.Duration(ms) * time.Millisecond
	}
	return c, nil
}

// worker drives one target. Counters are reset at every summary so each log
// line describes the last interval, not the lifetime.
type worker struct {
	t       target
	client  *http.Client
	timeout time.Duration
	sem     chan struct{}

	requests, non2xx, errs, unresolved, dropped atomic.Int64

	mu      sync.Mutex
	lastLog time.Time
}

// logLimited keeps an unreachable target from flooding the log at RPS lines
// per second: at most one line per logEvery per target.
func (w *worker) logLimited(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if time.Since(w.lastLog) < logEvery {
		return
	}
	w.lastLog = time.Now()
	log.Printf("%s: "+format, append([]any{w.t}, args...)...)
}

func (w *worker) run(ctx context.Context, rps float64, wg *sync.WaitGroup) {
	defer wg.Done()
	tick := time.NewTicker(time.Duration(float64(time.Second) / rps))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		// Never queue: if the target is so slow that maxInFlight requests
		// are pending, skip this tick rather than pile up goroutines.
		select {
		case w.sem <- struct{}{}:
			// Safe against a concurrent wg.Wait: run itself still holds a
			// slot, so the counter cannot be zero here.
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-w.sem }()
				w.once(ctx)
			}()
		default:
			w.dropped.Add(1)
		}
	}
}

func (w *worker) once(parent context.Context) {
	// One deadline covers the DNS lookup as well: Docker's embedded DNS may
	// forward an unknown name upstream and take a while to say no.
	ctx, cancel := context.WithTimeout(parent, w.timeout)
	defer cancel()
	w.requests.Add(1)

	addrs, err := net.DefaultResolver.LookupHost(ctx, w.t.Host)
	if err != nil || len(addrs) == 0 {
		if parent.Err() != nil {
			return // shutting down, not a failure of the target
		}
		// Typically the service is not deployed yet: keep trying.
		w.errs.Add(1)
		w.unresolved.Add(1)
		w.logLimited("cannot resolve %q (not deployed yet?): %v", w.t.Host, err)
		return
	}
	addr := addrs[rand.Intn(len(addrs))]

	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		"http://"+net.JoinHostPort(addr, w.t.Port)+w.t.Path, nil)
	if err != nil {
		w.errs.Add(1)
		w.logLimited("building request: %v", err)
		return
	}
	// Look to the server like a normal client of the service name.
	req.Host = net.JoinHostPort(w.t.Host, w.t.Port)
	resp, err := w.client.Do(req)
	if err != nil {
		if parent.Err() != nil {
			return
		}
		w.errs.Add(1)
		w.logLimited("request to %s: %v", addr, err)
		return
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		w.non2xx.Add(1)
	}
}

func (w *worker) summary() {
	log.Printf("%s: requests=%d non2xx=%d errors=%d (unresolved=%d) dropped=%d",
		w.t, w.requests.Swap(0), w.non2xx.Swap(0), w.errs.Swap(0), w.unresolved.Swap(0), w.dropped.Swap(0))
}

func main() {
	log.SetFlags(log.LstdFlags | log.LUTC)
	c, err := loadConfig(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "traffic: invalid configuration:", err)
		os.Exit(2)
	}
	rand.Seed(time.Now().UnixNano()) // Go 1.19's global source is otherwise fixed

	client := &http.Client{
		// A fresh connection per request, so each request really lands on
		// the replica picked above. Proxy stays nil on purpose: proxy env
		// vars must not redirect in-cluster traffic.
		Transport: &http.Transport{DisableKeepAlives: true},
		// Redirects would go through the transport's own resolution and
		// bypass the per-request replica choice; report them as they are.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	workers := make([]*worker, len(c.Targets))
	var wg sync.WaitGroup
	for i, t := range c.Targets {
		workers[i] = &worker{t: t, client: client, timeout: c.Timeout, sem: make(chan struct{}, maxInFlight)}
		wg.Add(1)
		go workers[i].run(ctx, c.RPS, &wg)
	}
	log.Printf("traffic: targets=%v rps_per_target=%g timeout=%s", c.Targets, c.RPS, c.Timeout)

	tick := time.NewTicker(logEvery)
	defer tick.Stop()
loop:
	for {
		select {
		case <-tick.C:
			for _, w := range workers {
				w.summary()
			}
		case <-ctx.Done():
			break loop
		}
	}
	// In-flight requests are cancelled through ctx, so this is quick.
	wg.Wait()
	for _, w := range workers {
		w.summary()
	}
	log.Printf("traffic: stopped")
}

// Command traffic sends a steady stream of GET requests to one or more
// services so that Prometheus has request metrics to judge a release by, and
// exports what those requests saw (status code and answering version per
// target) on /metrics, so a release can be judged by what users saw.
//
// It is meant to run inside a Swarm overlay network where services use
// endpoint_mode: dnsrr, i.e. there is no virtual IP and a service name
// resolves to one A record per running replica. Resolving once (or reusing
// connections) would pin all traffic to whichever replicas existed at that
// moment and never reach replicas started by a rolling update, so every
// request resolves afresh, picks a random address, and uses a new connection.
//
// Configuration, from the environment:
//
//	TARGETS       comma-separated app=kind@host:port[/path], kind main (the
//	              address users hit) or preview (a blue-green preview, present
//	              only during some releases); host:port[/path] alone means
//	              app=host, kind=main. E.g. demo=main@demo:8080/,demo=preview@demo-preview:8080/
//	RPS           requests per second per target (default 20)
//	TIMEOUT_MS    per request, DNS lookup included (default 2000)
//	METRICS_ADDR  where /metrics listens (default :9100)
//
// Everything lives in this one file on purpose: examples/build-static.sh
// decides whether to rebuild by comparing the binary with main.go and go.mod.
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
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	maxInFlight        = 50 // per target
	logEvery           = 10 * time.Second
	logUnresolvedEvery = time.Minute // a missing preview is normal; say so rarely

	// Label values for answers that did not say or did not come.
	versionUnknown = "unknown"
	codeError      = "error"
)

// -- targets ------------------------------------------------------------------

// Target kinds: the address users hit, or a blue-green preview address that
// exists only while a release has a preview up.
const (
	kindMain    = "main"
	kindPreview = "preview"
)

type target struct {
	App  string // the app label of its metrics
	Kind string // kindMain or kindPreview
	Host string // DNS name or IP, without port
	Port string
	Path string // always starts with "/"
}

func (t target) String() string {
	return t.App + "=" + t.Kind + "@" + net.JoinHostPort(t.Host, t.Port) + t.Path
}

// parseTargets parses a comma-separated list of targets, each either
// "app=kind@host:port/path" or the older "host:port/path" (app = host,
// kind = main). The path is optional and defaults to "/"; the port is
// required because a wrong guess (80 vs 8080) would look like an outage
// rather than a config error.
func parseTargets(s string) ([]target, error) {
	var ts []target
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue // tolerate "a:1/,b:2/," and stray spaces
		}
		t, err := parseTarget(item)
		if err != nil {
			return nil, fmt.Errorf("target %q: %v", item, err)
		}
		ts = append(ts, t)
	}
	if len(ts) == 0 {
		return nil, errors.New("TARGETS is empty; want e.g. TARGETS=demo=main@demo:8080/")
	}
	return ts, nil
}

func parseTarget(item string) (target, error) {
	if strings.Contains(item, "://") {
		return target{}, errors.New("give app=kind@host:port/path without a scheme")
	}
	addr, path := item, "/"
	if i := strings.IndexByte(item, '/'); i >= 0 {
		addr, path = item[:i], item[i:]
	}
	// Only an "@" before the path names the target: "demo:8080/a@b" is the
	// old form with a path that happens to contain one.
	var t target
	if at := strings.LastIndexByte(addr, '@'); at >= 0 {
		name := addr[:at]
		addr = addr[at+1:]
		app, kind, ok := strings.Cut(name, "=")
		switch {
		case !ok:
			return t, fmt.Errorf("%q before @: want app=kind", name)
		case app == "" || strings.TrimSpace(app) != app:
			return t, fmt.Errorf("app %q: want a name without surrounding spaces", app)
		case kind != kindMain && kind != kindPreview:
			return t, fmt.Errorf("kind %q: want %s or %s", kind, kindMain, kindPreview)
		}
		t.App, t.Kind = app, kind
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return t, fmt.Errorf("want app=kind@host:port/path or host:port/path: %v", err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return t, fmt.Errorf("invalid port %q", port)
	}
	if host == "" {
		return t, errors.New("empty host")
	}
	if t.App == "" {
		t.App, t.Kind = host, kindMain
	}
	t.Host, t.Port, t.Path = host, port, path
	return t, nil
}

// -- configuration ------------------------------------------------------------

type config struct {
	Targets     []target
	RPS         float64
	Timeout     time.Duration
	MetricsAddr string
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
	c.MetricsAddr = ":9100"
	if v := strings.TrimSpace(getenv("METRICS_ADDR")); v != "" {
		// Port 0 would pick a random port nobody knows to scrape.
		_, port, err := net.SplitHostPort(v)
		if n, perr := strconv.Atoi(port); err != nil || perr != nil || n < 1 || n > 65535 {
			return c, fmt.Errorf("METRICS_ADDR=%q: want [host]:port, e.g. :9100", v)
		}
		c.MetricsAddr = v
	}
	return c, nil
}

// -- metrics ------------------------------------------------------------------

// family is one counter metric: its series by label values. Counters are
// cumulative for the life of the process, as Prometheus' rate() expects.
type family struct {
	name, help string
	labels     []string
	series     map[string]*series // key: label values joined by "\x00"
}

type series struct {
	values []string
	n      uint64
}

func newFamily(name, help string, labels ...string) *family {
	return &family{name: name, help: help, labels: labels, series: map[string]*series{}}
}

// get returns the series for these label values, creating it at 0.
func (f *family) get(values ...string) *series {
	key := strings.Join(values, "\x00")
	s := f.series[key]
	if s == nil {
		s = &series{values: values}
		f.series[key] = s
	}
	return s
}

// metrics holds the counters the generator exports; safe for concurrent use.
type metrics struct {
	mu                                       sync.Mutex
	requests, responses, unresolved, dropped *family
}

func newMetrics(targets []target) *metrics {
	m := &metrics{
		requests: newFamily("traffic_requests_total",
			"Requests started, per target: responses plus preview lookups that found no name.",
			"app", "target"),
		responses: newFamily("traffic_responses_total",
			`What each request saw: the answering X-App-Version ("unknown" if none) and the status code ("error" if no HTTP answer came).`,
			"app", "target", "version", "code"),
		unresolved: newFamily("traffic_unresolved_total",
			`Requests whose host name did not resolve (NXDOMAIN or no address); for target="main" each is also a responses_total code="error".`,
			"app", "target"),
		dropped: newFamily("traffic_dropped_total",
			"Requests not sent because the target already had the maximum in flight.",
			"app", "target"),
	}
	// Series that exist from the first scrape: rate() cannot see the 0 -> 1
	// step of a series that appears at 1, so the first failures would be lost.
	for _, t := range targets {
		m.requests.get(t.App, t.Kind)
		m.unresolved.get(t.App, t.Kind)
		m.dropped.get(t.App, t.Kind)
		m.responses.get(t.App, t.Kind, versionUnknown, codeError)
	}
	return m
}

func (m *metrics) inc(f *family, values ...string) {
	m.mu.Lock()
	f.get(values...).n++
	m.mu.Unlock()
}

// countResponse records one request and what it saw.
func (m *metrics) countResponse(t target, version, code string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.countResponseLocked(t, version, code)
}

func (m *metrics) countResponseLocked(t target, version, code string) {
	m.requests.get(t.App, t.Kind).n++
	if version != versionUnknown {
		// A version's first answer creates its series; create its 200 and 500
		// at 0 with it, so its first 500 is a visible step for rate().
		m.responses.get(t.App, t.Kind, version, "200")
		m.responses.get(t.App, t.Kind, version, "500")
	}
	m.responses.get(t.App, t.Kind, version, code).n++
}

// countUnresolved records a request whose host name did not resolve. For a
// main target users would have failed too, so it is also an error response;
// a preview that does not exist is only that.
func (m *metrics) countUnresolved(t target) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if t.Kind == kindMain {
		m.countResponseLocked(t, versionUnknown, codeError)
	} else {
		m.requests.get(t.App, t.Kind).n++
	}
	m.unresolved.get(t.App, t.Kind).n++
}

// writeTo renders the Prometheus text exposition format 0.0.4: families in a
// fixed order, series sorted by label values, so two scrapes compare line by line.
func (m *metrics) writeTo(w io.Writer) error {
	var b strings.Builder
	m.mu.Lock()
	for _, f := range []*family{m.requests, m.responses, m.unresolved, m.dropped} {
		all := make([]*series, 0, len(f.series))
		for _, s := range f.series {
			all = append(all, s)
		}
		sort.Slice(all, func(i, j int) bool { return lessValues(all[i].values, all[j].values) })
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s counter\n", f.name, escapeHelp(f.help), f.name)
		for _, s := range all {
			b.WriteString(f.name)
			b.WriteByte('{')
			for i, l := range f.labels {
				if i > 0 {
					b.WriteByte(',')
				}
				fmt.Fprintf(&b, `%s="%s"`, l, escapeLabel(s.values[i]))
			}
			fmt.Fprintf(&b, "} %d\n", s.n)
		}
	}
	m.mu.Unlock()
	// Write outside the lock so a slow scraper cannot stall the requests.
	_, err := io.WriteString(w, b.String())
	return err
}

func lessValues(a, b []string) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

var (
	labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
)

func escapeLabel(s string) string { return labelEscaper.Replace(s) }
func escapeHelp(s string) string  { return helpEscaper.Replace(s) }

func metricsHandler(m *metrics) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		m.writeTo(w)
	})
	return mux
}

// -- requests -----------------------------------------------------------------

// outcome is what one request saw.
type outcome struct {
	unresolved bool   // the host name does not exist (NXDOMAIN) or has no address
	version    string // X-App-Version of the answer, versionUnknown if none
	code       string // HTTP status code, or codeError when no (whole) answer came
	err        error  // why, for the log
}

// probe sends one request to t: resolve, pick a random address, GET over a
// new connection. The caller's ctx bounds all of it, the DNS lookup included.
func probe(ctx context.Context, client *http.Client, resolver *net.Resolver, t target) outcome {
	addrs, err := resolver.LookupHost(ctx, t.Host)
	if err == nil && len(addrs) == 0 {
		err = &net.DNSError{Err: "no address", Name: t.Host, IsNotFound: true}
	}
	if err != nil {
		// Only "no such name" means the service is not there; a DNS timeout
		// or server failure is a failure like any other.
		var dnsErr *net.DNSError
		notFound := errors.As(err, &dnsErr) && dnsErr.IsNotFound
		return outcome{unresolved: notFound, version: versionUnknown, code: codeError, err: err}
	}
	addr := addrs[rand.Intn(len(addrs))]

	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		"http://"+net.JoinHostPort(addr, t.Port)+t.Path, nil)
	if err != nil {
		return outcome{version: versionUnknown, code: codeError, err: fmt.Errorf("building request: %v", err)}
	}
	// Look to the server like a normal client of the service name.
	req.Host = net.JoinHostPort(t.Host, t.Port)
	resp, err := client.Do(req)
	if err != nil {
		return outcome{version: versionUnknown, code: codeError, err: fmt.Errorf("request to %s: %v", addr, err)}
	}
	defer resp.Body.Close()
	o := outcome{version: versionUnknown, code: strconv.Itoa(resp.StatusCode)}
	if v := strings.TrimSpace(resp.Header.Get("X-App-Version")); v != "" {
		o.version = v
	}
	// An answer cut off in its body failed the user as well; its header still
	// says which version sent it.
	if _, err := io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)); err != nil {
		o.code, o.err = codeError, fmt.Errorf("reading answer from %s: %v", addr, err)
	}
	return o
}

// newClient is the client of every probe.
func newClient() *http.Client {
	return &http.Client{
		// A fresh connection per request, so each request really lands on
		// the replica probe picked. Proxy stays nil on purpose: proxy env
		// vars must not redirect in-cluster traffic.
		Transport: &http.Transport{DisableKeepAlives: true},
		// Redirects would go through the transport's own resolution and
		// bypass the per-request replica choice; report them as they are.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// logLimiter keeps an unreachable target from flooding the log at RPS lines
// per second: at most one line per interval.
type logLimiter struct {
	every time.Duration

	mu   sync.Mutex
	last time.Time
}

func (l *logLimiter) printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if time.Since(l.last) < l.every {
		return
	}
	l.last = time.Now()
	log.Printf(format, args...)
}

// worker drives one target. Its own counters are reset at every summary so
// each log line describes the last interval; the exported metrics are not.
type worker struct {
	t        target
	client   *http.Client
	resolver *net.Resolver
	timeout  time.Duration
	sem      chan struct{}
	metrics  *metrics

	requests, non2xx, errs, unresolved, dropped atomic.Int64

	logErr        logLimiter // failures
	logUnresolved logLimiter // a preview that does not exist (yet)
}

func newWorker(t target, client *http.Client, resolver *net.Resolver, timeout time.Duration, m *metrics) *worker {
	return &worker{
		t: t, client: client, resolver: resolver, timeout: timeout, metrics: m,
		sem:           make(chan struct{}, maxInFlight),
		logErr:        logLimiter{every: logEvery},
		logUnresolved: logLimiter{every: logUnresolvedEvery},
	}
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
			w.metrics.inc(w.metrics.dropped, w.t.App, w.t.Kind)
		}
	}
}

func (w *worker) once(parent context.Context) {
	ctx, cancel := context.WithTimeout(parent, w.timeout)
	defer cancel()
	o := probe(ctx, w.client, w.resolver, w.t)
	if parent.Err() != nil {
		return // shutting down, not a failure of the target
	}
	w.record(o)
}

// record counts one outcome in the interval's counters and the metrics.
func (w *worker) record(o outcome) {
	w.requests.Add(1)
	if o.unresolved {
		w.unresolved.Add(1)
		w.metrics.countUnresolved(w.t)
		if w.t.Kind == kindPreview {
			w.logUnresolved.printf("%s: no preview right now, %q does not resolve: %v", w.t, w.t.Host, o.err)
			return
		}
		w.errs.Add(1)
		w.logErr.printf("%s: cannot resolve %q (not deployed yet?): %v", w.t, w.t.Host, o.err)
		return
	}
	w.metrics.countResponse(w.t, o.version, o.code)
	switch {
	case o.code == codeError:
		w.errs.Add(1)
		w.logErr.printf("%s: %v", w.t, o.err)
	case !strings.HasPrefix(o.code, "2"):
		w.non2xx.Add(1)
	}
}

func (w *worker) summary() {
	log.Printf("%s: requests=%d non2xx=%d errors=%d (unresolved=%d) dropped=%d",
		w.t, w.requests.Swap(0), w.non2xx.Swap(0), w.errs.Swap(0), w.unresolved.Swap(0), w.dropped.Swap(0))
}

// -- main ---------------------------------------------------------------------

func main() {
	log.SetFlags(log.LstdFlags | log.LUTC)
	c, err := loadConfig(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "traffic: invalid configuration:", err)
		os.Exit(2)
	}
	rand.Seed(time.Now().UnixNano()) // Go 1.19's global source is otherwise fixed

	client := newClient()
	m := newMetrics(c.Targets)

	// Listen before sending anything: a port already taken is a config
	// error, better told at once than found missing from Prometheus later.
	ln, err := net.Listen("tcp", c.MetricsAddr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "traffic: metrics:", err)
		os.Exit(1)
	}
	msrv := &http.Server{Handler: metricsHandler(m), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := msrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Printf("traffic: metrics server: %v", err)
		}
	}()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	workers := make([]*worker, len(c.Targets))
	var wg sync.WaitGroup
	for i, t := range c.Targets {
		workers[i] = newWorker(t, client, net.DefaultResolver, c.Timeout, m)
		wg.Add(1)
		go workers[i].run(ctx, c.RPS, &wg)
	}
	log.Printf("traffic: targets=%v rps_per_target=%g timeout=%s metrics=http://%s/metrics",
		c.Targets, c.RPS, c.Timeout, c.MetricsAddr)

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
	msrv.Close()
	for _, w := range workers {
		w.summary()
	}
	log.Printf("traffic: stopped")
}

// Command demo-app is a tiny HTTP service used to exercise Ferryman releases.
//
// Its behaviour (version string, error rate, latency, crashing, hiding its
// metrics) is configurable so that a "bad version" can be produced simply by
// building the binary or image with different defaults: Ferryman's
// Prometheus-based verification should then reject it.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Build-time defaults, overridable with
//
//	go build -ldflags "-X main.defaultVersion=2.0.0 -X main.defaultFailRate=0.3"
//
// They are strings because -X can only set string variables. The matching
// environment variable, when set to a non-empty value, wins over them.
var (
	defaultApp            = "demo"
	defaultVersion        = "dev"
	defaultFailRate       = "0"
	defaultExtraLatencyMS = "0"
	defaultCrashOnStart   = "0"
	defaultDisableMetrics = "0"
	defaultPort           = "8080"
)

type config struct {
	App            string
	Version        string
	Port           int
	FailRate       float64
	ExtraLatency   time.Duration
	CrashOnStart   bool
	DisableMetrics bool
}

// loadConfig takes getenv as a parameter so tests need not touch the real
// environment.
func loadConfig(getenv func(string) string) (config, error) {
	// An empty value counts as unset: the Dockerfile turns every build arg
	// into an ENV, so an arg left unset arrives here as "".
	get := func(name, def string) string {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			return v
		}
		return def
	}
	var c config
	var err error

	c.App = get("APP", defaultApp)
	c.Version = get("VERSION", defaultVersion)
	// Both end up as label values; an empty one would be easy to miss.
	if c.App == "" || c.Version == "" {
		return c, errors.New("APP and VERSION must not be empty")
	}

	port := get("PORT", defaultPort)
	if c.Port, err = strconv.Atoi(port); err != nil || c.Port < 1 || c.Port > 65535 {
		return c, fmt.Errorf("PORT=%q: want an integer in 1..65535", port)
	}

	rate := get("FAIL_RATE", defaultFailRate)
	// The negated comparison also rejects NaN.
	if c.FailRate, err = strconv.ParseFloat(rate, 64); err != nil || !(c.FailRate >= 0 && c.FailRate <= 1) {
		return c, fmt.Errorf("FAIL_RATE=%q: want a number in 0..1", rate)
	}

	lat := get("EXTRA_LATENCY_MS", defaultExtraLatencyMS)
	ms, err := strconv.Atoi(lat)
	if err != nil || ms < 0 || ms > 600000 {
		return c, fmt.Errorf("EXTRA_LATENCY_MS=%q: want an integer in 0..600000", lat)
	}
	c.ExtraLatency = time.Duration(ms) * time.Millisecond

	if c.CrashOnStart, err = parseBool("CRASH_ON_START", get("CRASH_ON_START", defaultCrashOnStart)); err != nil {
		return c, err
	}
	if c.DisableMetrics, err = parseBool("DISABLE_METRICS", get("DISABLE_METRICS", defaultDisableMetrics)); err != nil {
		return c, err
	}
	return c, nil
}

// parseBool is stricter than strconv.ParseBool about garbage (a typo should
// not silently mean "false") but also accepts yes/no.
func parseBool(name, v string) (bool, error) {
	switch strings.ToLower(v) {
	case "1", "true", "yes", "on":
		return true, nil
	case "0", "false", "no", "off":
		return false, nil
	}
	return false, fmt.Errorf("%s=%q: want 1/true/yes or 0/false/no", name, v)
}

// Upper bounds in seconds; +Inf is implicit (it equals the total count).
var bucketBounds = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}

type metrics struct {
	app, version string

	mu      sync.Mutex
	codes   map[int]uint64
	buckets []uint64 // per-bucket (non-cumulative) counts, same order as bucketBounds
	sum     float64
	count   uint64
}

func newMetrics(app, version string) *metrics {
	// Pre-create 200 and 500 so both series exist from the first scrape:
	// otherwise an error-rate query has nothing to divide until the first
	// failure and rate() misses the 0 -> 1 step.
	return &metrics{
		app:     app,
		version: version,
		codes:   map[int]uint64{200: 0, 500: 0},
		buckets: make([]uint64, len(bucketBounds)),
	}
}

func (m *metrics) observe(code int, d time.Duration) {
	s := d.Seconds()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.codes[code]++
	m.sum += s
	m.count++
	for i, b := range bucketBounds {
		if s <= b {
			m.buckets[i]++
			break
		}
	}
}

// writeTo renders the Prometheus text exposition format 0.0.4.
func (m *metrics) writeTo(w io.Writer) error {
	m.mu.Lock()
	codes := make([]int, 0, len(m.codes))
	for c := range m.codes {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	counts := make([]uint64, len(codes))
	for i, c := range codes {
		counts[i] = m.codes[c]
	}
	buckets := append([]uint64(nil), m.buckets...)
	sum, count := m.sum, m.count
	m.mu.Unlock()

	// Write outside the lock so a slow scraper cannot stall request handling.
	var b strings.Builder
	lbl := fmt.Sprintf(`app="%s",version="%s"`, escapeLabel(m.app), escapeLabel(m.version))

	b.WriteString("# HELP http_requests_total Total HTTP requests to / by status code.\n")
	b.WriteString("# TYPE http_requests_total counter\n")
	for i, c := range codes {
		fmt.Fprintf(&b, "http_requests_total{%s,code=\"%d\"} %d\n", lbl, c, counts[i])
	}

	b.WriteString("# HELP http_request_duration_seconds Duration of HTTP requests to /.\n")
	b.WriteString("# TYPE http_request_duration_seconds histogram\n")
	var cum uint64
	for i, bound := range bucketBounds {
		cum += buckets[i]
		fmt.Fprintf(&b, "http_request_duration_seconds_bucket{%s,le=\"%s\"} %d\n", lbl, formatFloat(bound), cum)
	}
	fmt.Fprintf(&b, "http_request_duration_seconds_bucket{%s,le=\"+Inf\"} %d\n", lbl, count)
	fmt.Fprintf(&b, "http_request_duration_seconds_sum{%s} %s\n", lbl, formatFloat(sum))
	fmt.Fprintf(&b, "http_request_duration_seconds_count{%s} %d\n", lbl, count)

	_, err := io.WriteString(w, b.String())
	return err
}

func formatFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

func escapeLabel(s string) string { return labelEscaper.Replace(s) }

// newHandler serves /, /healthz and /metrics. Every answer says which app and
// version gave it, errors included: a client behind DNS round robin cannot
// otherwise tell which replica (old or new version) it reached, and the
// traffic generator counts what users saw by that header.
func newHandler(c config, m *metrics) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		// "/" is a catch-all pattern in ServeMux; only the root itself is the
		// app endpoint, so stray paths neither succeed nor get counted.
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		start := time.Now()
		if c.ExtraLatency > 0 {
			t := time.NewTimer(c.ExtraLatency)
			select {
			case <-t.C:
			case <-r.Context().Done(): // client gone: don't hold the goroutine
				t.Stop()
			}
		}
		code := http.StatusOK
		if c.FailRate > 0 && rand.Float64() < c.FailRate {
			code = http.StatusInternalServerError
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(code)
		if code == http.StatusOK {
			fmt.Fprintf(w, "ok %s\n", c.Version)
		} else {
			fmt.Fprintf(w, "error %s\n", c.Version)
		}
		m.observe(code, time.Since(start))
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		if c.DisableMetrics {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		m.writeTo(w)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-App-Name", c.App)
		w.Header().Set("X-App-Version", c.Version)
		mux.ServeHTTP(w, r)
	})
}

// check is the image's health check (`demo-app -check`): the image is FROM scratch, with
// no shell or curl, so the binary asks its own /healthz. Exit 0 when it answers 200.
func check(port int) int {
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", port))
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo-app -check:", err)
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(os.Stderr, "demo-app -check: /healthz answered", resp.Status)
		return 1
	}
	return 0
}

func main() {
	log.SetFlags(log.LstdFlags | log.LUTC)
	c, err := loadConfig(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo-app: invalid configuration:", err)
		os.Exit(2)
	}
	if len(os.Args) == 2 && os.Args[1] == "-check" {
		os.Exit(check(c.Port))
	}
	if c.CrashOnStart {
		fmt.Fprintf(os.Stderr, "demo-app: CRASH_ON_START is set, exiting (app=%s version=%s)\n", c.App, c.Version)
		os.Exit(1)
	}
	// Without seeding, Go 1.19's global source is deterministic and every
	// replica would fail on exactly the same request numbers.
	rand.Seed(time.Now().UnixNano())

	srv := &http.Server{
		Addr:              fmt.Sprintf(":%d", c.Port),
		Handler:           newHandler(c, newMetrics(c.App, c.Version)),
		ReadHeaderTimeout: 10 * time.Second,
	}
	log.Printf("demo-app starting app=%s version=%s port=%d fail_rate=%g extra_latency_ms=%d disable_metrics=%t",
		c.App, c.Version, c.Port, c.FailRate, c.ExtraLatency.Milliseconds(), c.DisableMetrics)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()

	select {
	case err := <-errc:
		log.Printf("demo-app: server failed: %v", err)
		os.Exit(1)
	case <-ctx.Done():
	}
	// Swarm waits stop_grace_period (10 s by default) before SIGKILL; finish
	// in-flight requests well within that.
	log.Printf("demo-app: signal received, shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Printf("demo-app: shutdown: %v", err)
		os.Exit(1)
	}
	log.Printf("demo-app: stopped")
}

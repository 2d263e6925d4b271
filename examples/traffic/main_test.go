package main

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// -- targets ------------------------------------------------------------------

func TestParseTargetsOldFormMeansAppIsHostAndKindMain(t *testing.T) {
	got, err := parseTargets(" demo:8080/, other:9090/api/v1?x=1 ,10.0.0.5:80,[::1]:8080/h,demo:8080/a@b")
	if err != nil {
		t.Fatal(err)
	}
	want := []target{
		{App: "demo", Kind: "main", Host: "demo", Port: "8080", Path: "/"},
		{App: "other", Kind: "main", Host: "other", Port: "9090", Path: "/api/v1?x=1"},
		{App: "10.0.0.5", Kind: "main", Host: "10.0.0.5", Port: "80", Path: "/"},
		{App: "::1", Kind: "main", Host: "::1", Port: "8080", Path: "/h"},
		// An "@" in the path does not make it the named form.
		{App: "demo", Kind: "main", Host: "demo", Port: "8080", Path: "/a@b"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
}

func TestParseTargetsNamedForm(t *testing.T) {
	got, err := parseTargets("demo=main@demo:8080/,demo=preview@demo-preview:8080/, shop=main@[::1]:81/x=1@2,legacy:9000")
	if err != nil {
		t.Fatal(err)
	}
	want := []target{
		{App: "demo", Kind: "main", Host: "demo", Port: "8080", Path: "/"},
		{App: "demo", Kind: "preview", Host: "demo-preview", Port: "8080", Path: "/"},
		{App: "shop", Kind: "main", Host: "::1", Port: "81", Path: "/x=1@2"},
		{App: "legacy", Kind: "main", Host: "legacy", Port: "9000", Path: "/"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	// String is the named form, so a log line can be pasted back into TARGETS.
	for _, tg := range got {
		again, err := parseTargets(tg.String())
		if err != nil || len(again) != 1 || again[0] != tg {
			t.Errorf("%q does not parse back: %+v, %v", tg.String(), again, err)
		}
	}
	if s := got[2].String(); s != "shop=main@[::1]:81/x=1@2" {
		t.Errorf("String() = %q", s)
	}
}

func TestParseTargetsRejectsInvalid(t *testing.T) {
	for _, s := range []string{
		// old form
		"", " , ", "demo", "demo/", "demo:/", ":8080/", "demo:0/", "demo:http/",
		"demo:99999/", "http://demo:8080/", "a:1:2/",
		// named form
		"demo@demo:8080/", "=main@demo:8080/", "demo=@demo:8080/", "demo=blue@demo:8080/",
		"demo=Main@demo:8080/", "demo =main@demo:8080/", "demo=main@demo/", "demo=main@:8080/",
		"demo=main@", "demo=main@demo:0/", "demo=main@http://demo:8080/",
		"demo=main@demo:8080/,demo=canary@demo:8080/", // one bad item fails the list
	} {
		if ts, err := parseTargets(s); err == nil {
			t.Errorf("%q: expected an error, got %+v", s, ts)
		}
	}
}

func TestLoadConfig(t *testing.T) {
	env := map[string]string{"TARGETS": "demo:8080/"}
	get := func(k string) string { return env[k] }

	c, err := loadConfig(get)
	if err != nil || c.RPS != 20 || c.Timeout != 2*time.Second || len(c.Targets) != 1 || c.MetricsAddr != ":9100" {
		t.Fatalf("defaults: %+v, %v", c, err)
	}
	env["RPS"], env["TIMEOUT_MS"], env["METRICS_ADDR"] = "0.5", "250", "127.0.0.1:9200"
	if c, err = loadConfig(get); err != nil || c.RPS != 0.5 || c.Timeout != 250*time.Millisecond || c.MetricsAddr != "127.0.0.1:9200" {
		t.Fatalf("overrides: %+v, %v", c, err)
	}
	for _, bad := range [][2]string{
		{"RPS", "0"}, {"RPS", "x"}, {"RPS", "NaN"}, {"TIMEOUT_MS", "-1"}, {"TIMEOUT_MS", "1s"},
		{"METRICS_ADDR", "9100"}, {"METRICS_ADDR", ":0"}, {"METRICS_ADDR", ":http"}, {"METRICS_ADDR", ":70000"},
	} {
		env["RPS"], env["TIMEOUT_MS"], env["METRICS_ADDR"] = "", "", ""
		env[bad[0]] = bad[1]
		if _, err := loadConfig(get); err == nil {
			t.Errorf("%s=%s: expected an error", bad[0], bad[1])
		}
	}
}

// -- exposition ---------------------------------------------------------------

func scrape(t *testing.T, m *metrics) string {
	t.Helper()
	var sb strings.Builder
	if err := m.writeTo(&sb); err != nil {
		t.Fatal(err)
	}
	return sb.String()
}

func TestExpositionIsSortedEscapedAndStartsAtZero(t *testing.T) {
	main := target{App: `we"ird\app`, Kind: kindMain}
	preview := target{App: "demo", Kind: kindPreview}
	m := newMetrics([]target{main, preview})
	m.countResponse(preview, "2.0.0", "200")
	m.countResponse(main, "1\n0", "503")
	m.countResponse(main, "1\n0", "503")
	m.countUnresolved(preview)

	want := `# HELP traffic_requests_total Requests started, per target: responses plus preview lookups that found no name.
# TYPE traffic_requests_total counter
traffic_requests_total{app="demo",target="preview"} 2
traffic_requests_total{app="we\"ird\\app",target="main"} 2
# HELP traffic_responses_total What each request saw: the answering X-App-Version ("unknown" if none) and the status code ("error" if no HTTP answer came).
# TYPE traffic_responses_total counter
traffic_responses_total{app="demo",target="preview",version="2.0.0",code="200"} 1
traffic_responses_total{app="demo",target="preview",version="2.0.0",code="500"} 0
traffic_responses_total{app="demo",target="preview",version="unknown",code="error"} 0
traffic_responses_total{app="we\"ird\\app",target="main",version="1\n0",code="200"} 0
traffic_responses_total{app="we\"ird\\app",target="main",version="1\n0",code="500"} 0
traffic_responses_total{app="we\"ird\\app",target="main",version="1\n0",code="503"} 2
traffic_responses_total{app="we\"ird\\app",target="main",version="unknown",code="error"} 0
# HELP traffic_unresolved_total Requests whose host name did not resolve (NXDOMAIN or no address); for target="main" each is also a responses_total code="error".
# TYPE traffic_unresolved_total counter
traffic_unresolved_total{app="demo",target="preview"} 1
traffic_unresolved_total{app="we\"ird\\app",target="main"} 0
# HELP traffic_dropped_total Requests not sent because the target already had the maximum in flight.
# TYPE traffic_dropped_total counter
traffic_dropped_total{app="demo",target="preview"} 0
traffic_dropped_total{app="we\"ird\\app",target="main"} 0
`
	got := scrape(t, m)
	if got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
	// Map order must not leak into the output.
	for i := 0; i < 20; i++ {
		if again := scrape(t, m); again != got {
			t.Fatalf("output changed between scrapes:\n%s", again)
		}
	}
}

func TestMetricsEndpoint(t *testing.T) {
	h := metricsHandler(newMetrics([]target{{App: "demo", Kind: kindMain}}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/plain; version=0.0.4") ||
		!strings.Contains(rec.Body.String(), `traffic_requests_total{app="demo",target="main"} 0`+"\n") {
		t.Fatalf("/metrics: %d %q\n%s", rec.Code, rec.Header().Get("Content-Type"), rec.Body.String())
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != 404 {
		t.Fatalf("/: got %d", rec.Code)
	}
}

// -- requests against real servers -------------------------------------------

// sample returns the value of one exposition line, "" when it is absent.
func sample(out, series string) string {
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, series+" ") {
			return strings.TrimPrefix(line, series+" ")
		}
	}
	return ""
}

func targetOf(t *testing.T, app, kind, hostport, path string) target {
	t.Helper()
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Fatal(err)
	}
	return target{App: app, Kind: kind, Host: host, Port: port, Path: path}
}

func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestResponsesCountedByVersionAndCode(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			w.Header().Set("X-App-Version", "1.4.2")
		case "/fail":
			w.Header().Set("X-App-Version", "1.5.0")
			w.WriteHeader(500)
		case "/anonymous": // no header: an app that does not say
		}
		w.Write([]byte("hello\n"))
	}))
	defer srv.Close()
	addr := srv.Listener.Addr().String()

	ok := targetOf(t, "demo", kindMain, addr, "/ok")
	fail := targetOf(t, "demo", kindMain, addr, "/fail")
	anon := targetOf(t, "demo", kindPreview, addr, "/anonymous")
	refused := targetOf(t, "demo", kindMain, closedPort(t), "/")

	m := newMetrics([]target{ok, anon})
	workers := map[string]*worker{}
	client := newClient()
	for name, tg := range map[string]target{"ok": ok, "fail": fail, "anon": anon, "refused": refused} {
		workers[name] = newWorker(tg, client, net.DefaultResolver, 2*time.Second, m)
	}
	for _, round := range []struct {
		name string
		n    int
	}{{"ok", 3}, {"fail", 2}, {"anon", 1}, {"refused", 2}} {
		w := workers[round.name]
		for i := 0; i < round.n; i++ {
			w.once(context.Background())
		}
	}

	out := scrape(t, m)
	for series, want := range map[string]string{
		`traffic_responses_total{app="demo",target="main",version="1.4.2",code="200"}`:        "3",
		`traffic_responses_total{app="demo",target="main",version="1.4.2",code="500"}`:        "0",
		`traffic_responses_total{app="demo",target="main",version="1.5.0",code="500"}`:        "2",
		`traffic_responses_total{app="demo",target="preview",version="unknown",code="200"}`:   "1",
		`traffic_responses_total{app="demo",target="main",version="unknown",code="error"}`:    "2",
		`traffic_responses_total{app="demo",target="preview",version="unknown",code="error"}`: "0",
		`traffic_requests_total{app="demo",target="main"}`:                                    "7",
		`traffic_requests_total{app="demo",target="preview"}`:                                 "1",
		`traffic_unresolved_total{app="demo",target="main"}`:                                  "0",
	} {
		if got := sample(out, series); got != want {
			t.Errorf("%s = %q, want %q", series, got, want)
		}
	}
	if t.Failed() {
		t.Logf("full output:\n%s", out)
	}
	// The per-interval log counters tell the same story.
	if w := workers["fail"]; w.requests.Load() != 2 || w.non2xx.Load() != 2 || w.errs.Load() != 0 {
		t.Errorf("fail worker: requests=%d non2xx=%d errs=%d", w.requests.Load(), w.non2xx.Load(), w.errs.Load())
	}
	if w := workers["refused"]; w.requests.Load() != 2 || w.errs.Load() != 2 || w.unresolved.Load() != 0 {
		t.Errorf("refused worker: requests=%d errs=%d unresolved=%d", w.requests.Load(), w.errs.Load(), w.unresolved.Load())
	}
}

func TestTimeoutCountsAsError(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)

	tg := targetOf(t, "demo", kindMain, srv.Listener.Addr().String(), "/")
	m := newMetrics([]target{tg})
	newWorker(tg, newClient(), net.DefaultResolver, 50*time.Millisecond, m).once(context.Background())
	if got := sample(scrape(t, m), `traffic_responses_total{app="demo",target="main",version="unknown",code="error"}`); got != "1" {
		t.Fatalf("timeout: error count %q, want 1", got)
	}
}

func TestEveryRequestOpensANewConnection(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()

	tg := targetOf(t, "demo", kindMain, srv.Listener.Addr().String(), "/")
	w := newWorker(tg, newClient(), net.DefaultResolver, 2*time.Second, newMetrics(nil))
	for i := 0; i < 3; i++ {
		w.once(context.Background())
	}
	if n := conns.Load(); n != 3 {
		t.Fatalf("3 requests used %d connections; keep-alive would pin one replica", n)
	}
}

func TestFullTargetDropsInsteadOfQueueing(t *testing.T) {
	tg := target{App: "demo", Kind: kindMain, Host: "127.0.0.1", Port: "9", Path: "/"}
	m := newMetrics([]target{tg})
	w := newWorker(tg, newClient(), net.DefaultResolver, time.Second, m)
	for i := 0; i < maxInFlight; i++ {
		w.sem <- struct{}{} // every slot taken by a (pretend) slow request
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	w.run(ctx, 1000, &wg)

	dropped := w.dropped.Load()
	if dropped == 0 || w.requests.Load() != 0 {
		t.Fatalf("dropped=%d requests=%d", dropped, w.requests.Load())
	}
	if got := sample(scrape(t, m), `traffic_dropped_total{app="demo",target="main"}`); got == "0" || got == "" {
		t.Fatalf("traffic_dropped_total = %q", got)
	}
}

// -- name resolution ----------------------------------------------------------

// fakeDNS answers every query with rcode (3 = NXDOMAIN, 2 = SERVFAIL) and
// returns a Go resolver that asks it, so the real resolver's error is what
// the generator classifies.
func fakeDNS(t *testing.T, rcode byte) *net.Resolver {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if n < 12 {
				continue
			}
			// Echo the query (ID, question, EDNS record) as a response: QR
			// set, RD kept, RA set, no answers.
			resp := append([]byte(nil), buf[:n]...)
			resp[2] = 0x80 | resp[2]&0x01
			resp[3] = 0x80 | rcode
			pc.WriteTo(resp, from)
		}
	}()
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "udp", pc.LocalAddr().String())
		},
	}
}

func TestPreviewThatDoesNotResolveIsNotAnError(t *testing.T) {
	preview := target{App: "demo", Kind: kindPreview, Host: "demo-preview.ferryman.test", Port: "8080", Path: "/"}
	m := newMetrics([]target{preview})
	w := newWorker(preview, newClient(), fakeDNS(t, 3), 2*time.Second, m)
	w.once(context.Background())
	w.once(context.Background())

	out := scrape(t, m)
	for series, want := range map[string]string{
		`traffic_unresolved_total{app="demo",target="preview"}`:                               "2",
		`traffic_requests_total{app="demo",target="preview"}`:                                 "2",
		`traffic_responses_total{app="demo",target="preview",version="unknown",code="error"}`: "0",
	} {
		if got := sample(out, series); got != want {
			t.Errorf("%s = %q, want %q\n%s", series, got, want, out)
		}
	}
	if w.errs.Load() != 0 || w.unresolved.Load() != 2 {
		t.Errorf("log counters: errs=%d unresolved=%d", w.errs.Load(), w.unresolved.Load())
	}
}

func TestMainThatDoesNotResolveIsAnError(t *testing.T) {
	main := target{App: "demo", Kind: kindMain, Host: "demo.ferryman.test", Port: "8080", Path: "/"}
	m := newMetrics([]target{main})
	w := newWorker(main, newClient(), fakeDNS(t, 3), 2*time.Second, m)
	w.once(context.Background())

	out := scrape(t, m)
	for series, want := range map[string]string{
		`traffic_responses_total{app="demo",target="main",version="unknown",code="error"}`: "1",
		`traffic_unresolved_total{app="demo",target="main"}`:                               "1",
		`traffic_requests_total{app="demo",target="main"}`:                                 "1",
	} {
		if got := sample(out, series); got != want {
			t.Errorf("%s = %q, want %q\n%s", series, got, want, out)
		}
	}
	if w.errs.Load() != 1 {
		t.Errorf("errs=%d, want 1", w.errs.Load())
	}
}

func TestPreviewDNSFailureOtherThanNoSuchNameIsAnError(t *testing.T) {
	// SERVFAIL does not say "no preview": the preview may exist and be
	// unreachable, which is a failure to see, not to hide.
	preview := target{App: "demo", Kind: kindPreview, Host: "demo-preview.ferryman.test", Port: "8080", Path: "/"}
	m := newMetrics([]target{preview})
	newWorker(preview, newClient(), fakeDNS(t, 2), 2*time.Second, m).once(context.Background())

	out := scrape(t, m)
	if got := sample(out, `traffic_responses_total{app="demo",target="preview",version="unknown",code="error"}`); got != "1" {
		t.Errorf("SERVFAIL: error count %q, want 1\n%s", got, out)
	}
	if got := sample(out, `traffic_unresolved_total{app="demo",target="preview"}`); got != "0" {
		t.Errorf("SERVFAIL: unresolved %q, want 0", got)
	}
}

func TestShutdownIsNotCounted(t *testing.T) {
	tg := targetOf(t, "demo", kindMain, closedPort(t), "/")
	m := newMetrics([]target{tg})
	w := newWorker(tg, newClient(), net.DefaultResolver, time.Second, m)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	w.once(ctx)
	if w.requests.Load() != 0 || sample(scrape(t, m), `traffic_requests_total{app="demo",target="main"}`) != "0" {
		t.Fatalf("a request cancelled by shutdown was counted")
	}
}

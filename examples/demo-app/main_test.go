package main

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func envFrom(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoadConfigDefaults(t *testing.T) {
	c, err := loadConfig(envFrom(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.App != "demo" || c.Version != "dev" || c.Port != 8080 || c.FailRate != 0 ||
		c.ExtraLatency != 0 || c.CrashOnStart || c.DisableMetrics {
		t.Fatalf("unexpected defaults: %+v", c)
	}
}

func TestLoadConfigEnvOverrides(t *testing.T) {
	c, err := loadConfig(envFrom(map[string]string{
		"APP": "shop", "VERSION": "1.2.3", "PORT": "9000", "FAIL_RATE": "0.25",
		"EXTRA_LATENCY_MS": "150", "CRASH_ON_START": "yes", "DISABLE_METRICS": "TRUE",
	}))
	if err != nil {
		t.Fatal(err)
	}
	want := config{App: "shop", Version: "1.2.3", Port: 9000, FailRate: 0.25,
		ExtraLatency: 150 * time.Millisecond, CrashOnStart: true, DisableMetrics: true}
	if c != want {
		t.Fatalf("got %+v, want %+v", c, want)
	}
}

func TestLoadConfigBakedDefaults(t *testing.T) {
	// Simulates -ldflags "-X main.defaultFailRate=1 -X main.defaultVersion=bad".
	oldRate, oldVer := defaultFailRate, defaultVersion
	defer func() { defaultFailRate, defaultVersion = oldRate, oldVer }()
	defaultFailRate, defaultVersion = "1", "bad"

	c, err := loadConfig(envFrom(map[string]string{"FAIL_RATE": ""})) // empty = unset
	if err != nil {
		t.Fatal(err)
	}
	if c.FailRate != 1 || c.Version != "bad" {
		t.Fatalf("baked defaults not used: %+v", c)
	}
	c, err = loadConfig(envFrom(map[string]string{"FAIL_RATE": "0"}))
	if err != nil || c.FailRate != 0 {
		t.Fatalf("env should override baked default: %+v, %v", c, err)
	}
}

func TestLoadConfigInvalid(t *testing.T) {
	for _, env := range []map[string]string{
		{"FAIL_RATE": "abc"},
		{"FAIL_RATE": "2"},
		{"FAIL_RATE": "-0.1"},
		{"FAIL_RATE": "NaN"},
		{"EXTRA_LATENCY_MS": "-5"},
		{"EXTRA_LATENCY_MS": "1.5"},
		{"PORT": "0"},
		{"PORT": "http"},
		{"CRASH_ON_START": "maybe"},
		{"DISABLE_METRICS": "2"},
	} {
		if _, err := loadConfig(envFrom(env)); err == nil {
			t.Errorf("%v: expected an error", env)
		} else if !strings.Contains(err.Error(), "=") {
			t.Errorf("%v: error should name the variable: %v", env, err)
		}
	}
}

// sampleLine matches "name{labels} value" as emitted by writeTo.
var sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\} (\S+)$`)

func TestMetricsExposition(t *testing.T) {
	m := newMetrics("demo", `v"1\`)
	m.observe(200, 3*time.Millisecond)   // le=0.005
	m.observe(200, 300*time.Millisecond) // le=0.5
	m.observe(500, 10*time.Second)       // only +Inf

	var sb strings.Builder
	if err := m.writeTo(&sb); err != nil {
		t.Fatal(err)
	}
	out := sb.String()
	if !strings.HasSuffix(out, "\n") {
		t.Fatal("exposition must end with a newline")
	}

	samples := map[string]string{}
	typed := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "# TYPE ") {
			f := strings.Fields(line)
			typed[f[2]] = f[3]
			continue
		}
		if strings.HasPrefix(line, "# HELP ") {
			continue
		}
		g := sampleLine.FindStringSubmatch(line)
		if g == nil {
			t.Fatalf("malformed line %q", line)
		}
		if _, err := strconv.ParseFloat(g[3], 64); err != nil {
			t.Fatalf("bad value in %q", line)
		}
		samples[g[1]+"{"+g[2]+"}"] = g[3]
	}
	if typed["http_requests_total"] != "counter" || typed["http_request_duration_seconds"] != "histogram" {
		t.Fatalf("wrong TYPE lines: %v", typed)
	}

	lbl := `app="demo",version="v\"1\\"`
	want := map[string]string{
		`http_requests_total{` + lbl + `,code="200"}`:                  "2",
		`http_requests_total{` + lbl + `,code="500"}`:                  "1",
		`http_request_duration_seconds_bucket{` + lbl + `,le="0.005"}`: "1",
		`http_request_duration_seconds_bucket{` + lbl + `,le="0.25"}`:  "1",
		`http_request_duration_seconds_bucket{` + lbl + `,le="0.5"}`:   "2", // cumulative
		`http_request_duration_seconds_bucket{` + lbl + `,le="5"}`:     "2",
		`http_request_duration_seconds_bucket{` + lbl + `,le="+Inf"}`:  "3",
		`http_request_duration_seconds_sum{` + lbl + `}`:               "10.303",
		`http_request_duration_seconds_count{` + lbl + `}`:             "3",
	}
	for k, v := range want {
		if samples[k] != v {
			t.Errorf("%s = %q, want %q\nfull output:\n%s", k, samples[k], v, out)
		}
	}
	if n := strings.Count(out, "http_request_duration_seconds_bucket{"); n != len(bucketBounds)+1 {
		t.Errorf("got %d buckets, want %d", n, len(bucketBounds)+1)
	}
}

func TestMetricsZeroSeriesPresent(t *testing.T) {
	var sb strings.Builder
	newMetrics("demo", "1").writeTo(&sb)
	for _, s := range []string{
		`http_requests_total{app="demo",version="1",code="200"} 0`,
		`http_requests_total{app="demo",version="1",code="500"} 0`,
		`http_request_duration_seconds_count{app="demo",version="1"} 0`,
	} {
		if !strings.Contains(sb.String(), s+"\n") {
			t.Errorf("missing %q in:\n%s", s, sb.String())
		}
	}
}

func TestHandlers(t *testing.T) {
	get := func(h http.Handler, path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		return rec
	}

	c := config{App: "demo", Version: "1", FailRate: 1}
	m := newMetrics(c.App, c.Version)
	h := newHandler(c, m)
	if r := get(h, "/"); r.Code != 500 {
		t.Fatalf("FAIL_RATE=1: got %d", r.Code)
	}
	if r := get(h, "/healthz"); r.Code != 200 {
		t.Fatalf("/healthz: got %d", r.Code)
	}
	get(h, "/nope")
	r := get(h, "/metrics")
	if r.Code != 200 || !strings.HasPrefix(r.Header().Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Fatalf("/metrics: %d %q", r.Code, r.Header().Get("Content-Type"))
	}
	body := r.Body.String()
	// Only "/" counts: not /healthz, /nope or /metrics itself.
	if !strings.Contains(body, `code="500"} 1`+"\n") || !strings.Contains(body, `code="200"} 0`+"\n") {
		t.Fatalf("unexpected counters:\n%s", body)
	}

	c = config{App: "demo", Version: "2", DisableMetrics: true}
	h = newHandler(c, newMetrics(c.App, c.Version))
	if r := get(h, "/"); r.Code != 200 || r.Body.String() != "ok 2\n" {
		t.Fatalf("/: %d %q", r.Code, r.Body.String())
	}
	if r := get(h, "/metrics"); r.Code != 404 {
		t.Fatalf("DISABLE_METRICS: /metrics got %d", r.Code)
	}
}

func TestEveryAnswerNamesAppAndVersion(t *testing.T) {
	for _, tc := range []struct {
		failRate float64
		path     string
		code     int
	}{
		{0, "/", 200},
		{1, "/", 500}, // the injected errors must say who failed
		{0, "/nope", 404},
		{0, "/healthz", 200},
		{0, "/metrics", 200},
	} {
		c := config{App: "shop", Version: "1.4.2", FailRate: tc.failRate}
		rec := httptest.NewRecorder()
		newHandler(c, newMetrics(c.App, c.Version)).ServeHTTP(rec, httptest.NewRequest("GET", tc.path, nil))
		if rec.Code != tc.code {
			t.Errorf("FAIL_RATE=%g %s: got %d, want %d", tc.failRate, tc.path, rec.Code, tc.code)
		}
		if v, a := rec.Header().Get("X-App-Version"), rec.Header().Get("X-App-Name"); v != "1.4.2" || a != "shop" {
			t.Errorf("FAIL_RATE=%g %s: X-App-Version=%q X-App-Name=%q", tc.failRate, tc.path, v, a)
		}
	}
}

func TestVersionHeaderOverRealConnection(t *testing.T) {
	// httptest.ResponseRecorder would show headers set after WriteHeader too;
	// a real server proves they are on the wire.
	c := config{App: "demo", Version: "2", FailRate: 1}
	srv := httptest.NewServer(newHandler(c, newMetrics(c.App, c.Version)))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 500 || resp.Header.Get("X-App-Version") != "2" || resp.Header.Get("X-App-Name") != "demo" {
		t.Fatalf("got %d %v", resp.StatusCode, resp.Header)
	}
}

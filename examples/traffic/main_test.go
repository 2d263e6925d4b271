package main

import (
	"reflect"
	"testing"
	"time"
)

func TestParseTargets(t *testing.T) {
	got, err := parseTargets(" demo:8080/, other:9090/api/v1?x=1 ,10.0.0.5:80,[::1]:8080/h,")
	if err != nil {
		t.Fatal(err)
	}
	want := []target{
		{Host: "demo", Port: "8080", Path: "/"},
		{Host: "other", Port: "9090", Path: "/api/v1?x=1"},
		{Host: "10.0.0.5", Port: "80", Path: "/"},
		{Host: "::1", Port: "8080", Path: "/h"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	if s := got[3].String(); s != "[::1]:8080/h" {
		t.Errorf("String() = %q", s)
	}
}

func TestParseTargetsInvalid(t *testing.T) {
	for _, s := range []string{
		"", " , ", "demo", "demo/", "demo:/", ":8080/", "demo:0/", "demo:http/",
		"demo:99999/", "http://demo:8080/", "a:1:2/",
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
	if err != nil || c.RPS != 20 || c.Timeout != 2*time.Second || len(c.Targets) != 1 {
		t.Fatalf("defaults: %+v, %v", c, err)
	}
	env["RPS"], env["TIMEOUT_MS"] = "0.5", "250"
	if c, err = loadConfig(get); err != nil || c.RPS != 0.5 || c.Timeout != 250*time.Millisecond {
		t.Fatalf("overrides: %+v, %v", c, err)
	}
	for _, bad := range [][2]string{{"RPS", "0"}, {"RPS", "x"}, {"RPS", "NaN"}, {"TIMEOUT_MS", "-1"}, {"TIMEOUT_MS", "1s"}} {
		env["RPS"], env["TIMEOUT_MS"] = "", ""
		env[bad[0]] = bad[1]
		if _, err := loadConfig(get); err == nil {
			t.Errorf("%s=%s: expected an error", bad[0], bad[1])
		}
	}
}

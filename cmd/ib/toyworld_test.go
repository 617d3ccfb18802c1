package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/instructbooth/instructbooth/model/generate"
)

// TestToyworld_sampleAndScore: `ib toyworld sample` writes the scenes with
// their captions, and `ib toyworld score` scores a scene high against its
// own caption and lower against another.
func TestToyworld_sampleAndScore(t *testing.T) {
	dir := t.TempDir()
	code, stdout, stderr := ib(t, "toyworld", "sample", "--n", "3", "--seed", "4", "--out", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	caps, err := os.ReadFile(filepath.Join(dir, "captions.txt"))
	if err != nil || strings.Count(string(caps), "\n") != 3 || !strings.Contains(stdout, "3 scenes") {
		t.Fatalf("captions %q (%v), stdout %q", caps, err, stdout)
	}
	first := strings.SplitN(strings.SplitN(string(caps), "\n", 2)[0], "\t", 2)
	f, err := os.Open(filepath.Join(dir, first[0]))
	if err != nil {
		t.Fatal(err)
	}
	text, err := generate.ReadPNGText(f)
	f.Close()
	if err != nil || len(text) != 1 || text[0].Value != first[1] {
		t.Fatalf("PNG text %v (%v), want the caption %q", text, err, first[1])
	}
	if _, err := os.Stat(filepath.Join(dir, "sheet.png")); err != nil {
		t.Error(err)
	}
	img := filepath.Join(dir, first[0])
	_, own, _ := ib(t, "toyworld", "score", "--image", img, "--prompt", first[1])
	_, other, _ := ib(t, "toyworld", "score", "--image", img, "--prompt", "a yellow cup lying down at night")
	if !strings.HasPrefix(own, "alignment 1.000") && !strings.HasPrefix(own, "alignment 0.99") {
		t.Errorf("own caption: %q", own)
	}
	if strings.HasPrefix(other, "alignment 1.000") || !strings.Contains(other, "subject fidelity") {
		t.Errorf("other caption: %q", other)
	}
}

func TestToyworld_errors(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"toyworld"}, 2, "toyworld command is required"},
		{[]string{"toyworld", "paint"}, 2, "unknown toyworld command"},
		{[]string{"toyworld", "sample", "--size", "48", "--out", t.TempDir()}, 2, "render size 48"},
		{[]string{"toyworld", "train", "--unet-channels", "32,x"}, 2, "--unet-channels"},
		{[]string{"toyworld", "eval"}, 2, "--model is required"},
		{[]string{"toyworld", "score", "--image", "/nonexistent.png"}, 1, "/nonexistent.png"},
	} {
		code, _, stderr := ib(t, c.args...)
		if code != c.code || !strings.Contains(stderr, c.msg) {
			t.Errorf("ib %v: exit %d, stderr %q; want exit %d mentioning %q", c.args, code, stderr, c.code, c.msg)
		}
	}
}

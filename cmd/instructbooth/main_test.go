package main

import (
	"bytes"
	"image/png"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/instructbooth/instructbooth/icons"
	"github.com/instructbooth/instructbooth/store"
)

// TestFyneApp checks what `fyne package` reads from FyneApp.toml: a name,
// the app id this binary uses, a semantic version, a positive build
// number and an icon that is the bundled square PNG of at least 256 px.
func TestFyneApp(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "FyneApp.toml"))
	if err != nil {
		t.Fatal(err)
	}
	field := func(key string) string {
		m := regexp.MustCompile(`(?m)^` + key + `\s*=\s*"?([^"\n]*)"?\s*$`).FindSubmatch(data)
		if m == nil {
			t.Errorf("FyneApp.toml has no %s", key)
			return ""
		}
		return string(m[1])
	}
	if field("Name") != "InstructBooth" || field("ID") != AppID {
		t.Errorf("name %q, id %q (binary uses %q)", field("Name"), field("ID"), AppID)
	}
	if v := field("Version"); !regexp.MustCompile(`^\d+\.\d+\.\d+$`).MatchString(v) {
		t.Errorf("version %q is not x.y.z", v)
	}
	if b := field("Build"); !regexp.MustCompile(`^[1-9]\d*$`).MatchString(b) {
		t.Errorf("build %q", b)
	}
	icon, err := os.ReadFile(filepath.Join("..", "..", field("Icon")))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(icon, icons.AppPNG) {
		t.Error("the packaged icon is not the one the window shows (icons.AppPNG)")
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(icon))
	if err != nil || cfg.Width != cfg.Height || cfg.Width < 256 {
		t.Errorf("icon %dx%d, %v", cfg.Width, cfg.Height, err)
	}
}

// TestDBPath: -data wins over the folder chosen in Settings, which wins
// over the default.
func TestDBPath(t *testing.T) {
	t.Setenv("INSTRUCTBOOTH_DATA", "/env")
	if p, _ := dbPath("/flag", "/pref"); p != filepath.Join("/flag", store.FileName) {
		t.Errorf("flag: %s", p)
	}
	if p, _ := dbPath("", "/pref"); p != filepath.Join("/pref", store.FileName) {
		t.Errorf("pref: %s", p)
	}
	if p, _ := dbPath("", ""); p != filepath.Join("/env", store.FileName) {
		t.Errorf("default: %s", p)
	}
}

package dreambooth

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/instructbooth/instructbooth/internal/testenv"
	"github.com/instructbooth/instructbooth/model/generate"
	"github.com/instructbooth/instructbooth/training"
)

// TestClassImages_cacheAndResume: Ensure generates the missing images
// only; an image deleted or damaged is drawn again, identical to the first
// time (its seed depends on its index alone); a folder of another model is
// refused.
func TestClassImages_cacheAndResume(t *testing.T) {
	e := testenv.Engine(t)
	p := loadTiny(t, e)
	comps := generate.Components{Tokenizer: p.Tokenizer, Text: p.Text, UNet: p.UNet, VAE: p.VAE, Schedule: p.Schedule, Name: "tiny"}
	root := t.TempDir()
	dir := ClassCacheDir(root, "0123456789abcdef0123", "Golden Retriever!", 64)
	if filepath.Base(dir) != "0123456789abcdef-golden-retriever-64" {
		t.Errorf("cache folder %s", dir)
	}
	ci := ClassImages{Dir: dir, BaseModel: "0123456789abcdef0123", ClassNoun: "golden retriever", N: 2, Resolution: 64, Steps: 2}
	var last training.Status
	paths, err := ci.Ensure(context.Background(), comps, func(s training.Status) { last = s })
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 2 || last.Step != 2 || last.Total != 2 {
		t.Fatalf("paths %v, last progress %+v", paths, last)
	}
	first := make([][]byte, 2)
	for i, p := range paths {
		first[i], _ = os.ReadFile(p)
	}
	if bytes.Equal(first[0], first[1]) {
		t.Error("two class images are identical")
	}
	st0, _ := os.Stat(paths[0])
	// Image 1 deleted, then Ensure with 3: images 1 and 2 are drawn, 0 kept.
	os.Remove(paths[1])
	var starts []int
	ci.N = 3
	paths, err = ci.Ensure(context.Background(), comps, func(s training.Status) { starts = append(starts, s.Step) })
	if err != nil {
		t.Fatal(err)
	}
	if len(starts) == 0 || starts[0] != 1 || starts[len(starts)-1] != 3 {
		t.Errorf("progress steps %v, want 1..3", starts)
	}
	again, _ := os.ReadFile(paths[1])
	if !bytes.Equal(again, first[1]) {
		t.Error("a regenerated class image differs from the first drawing")
	}
	if st, _ := os.Stat(paths[0]); !st.ModTime().Equal(st0.ModTime()) {
		t.Error("an existing class image was rewritten")
	}
	// A damaged image is drawn again.
	os.WriteFile(paths[0], first[0][:len(first[0])/2], 0o644)
	if _, err := ci.Ensure(context.Background(), comps, nil); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(paths[0]); !bytes.Equal(b, first[0]) {
		t.Error("a damaged class image was not replaced by the same drawing")
	}
	// The folder belongs to one model and class.
	other := ci
	other.BaseModel = "ffff"
	if _, err := other.Ensure(context.Background(), comps, nil); err == nil || !strings.Contains(err.Error(), "of model 0123456789abcdef0123") {
		t.Errorf("foreign cache folder: %v", err)
	}
	// Cancelled before the first missing image: nothing is drawn.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ci.N = 4
	if _, err := ci.Ensure(ctx, comps, nil); err != context.Canceled {
		t.Errorf("cancelled: %v", err)
	}
	if _, err := os.Stat(ClassImagePath(dir, 3)); !os.IsNotExist(err) {
		t.Error("a cancelled Ensure drew an image")
	}
}

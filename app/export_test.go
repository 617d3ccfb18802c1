package app

import (
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"fyne.io/fyne/v2/test"

	"github.com/instructbooth/instructbooth/internal/testenv"
	"github.com/instructbooth/instructbooth/model/lora"
	"github.com/instructbooth/instructbooth/model/nn"
	"github.com/instructbooth/instructbooth/model/safetensors"
	"github.com/instructbooth/instructbooth/model/sd"
	"github.com/instructbooth/instructbooth/store"
)

// effective returns each adapter's scale * Up and Down as read back.
func effective(t *testing.T, m nn.Adapters) map[string][2][]float32 {
	t.Helper()
	out := map[string][2][]float32{}
	for k, a := range m {
		up, err := a.Up.Read()
		if err != nil {
			t.Fatal(err)
		}
		down, err := a.Down.Read()
		if err != nil {
			t.Fatal(err)
		}
		for i := range up {
			up[i] *= a.Scale
		}
		out[k] = [2][]float32{up, down}
	}
	return out
}

// TestExportLoRA stores the kohya fixture LoRA as a checkpoint of a
// personalize run and exports it as diffusers and as kohya: each file
// loads back against the tiny model with the same adapters (scale * Up and
// Down equal to 1e-6 relative), and carries the subject's identifier, class
// noun, the step and the base model's hash in its metadata.
func TestExportLoRA(t *testing.T) {
	u := newTestUI(t, true, nil)
	bm := tinyModel(t, u)
	s := newSubject(t, u, "Rex", "dog")
	run, ck := loraRun(t, u, store.KindPersonalize, s, bm, "lora_kohya.safetensors", 800)

	pl, err := sd.Load(u.Engine(), bm.Path, sd.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer pl.Release()
	orig, err := lora.Load(filepath.Join(testenv.Fixtures(t), "sd-tiny", "lora", "lora_kohya.safetensors"), Targets(pl))
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Release()
	want := effective(t, orig.UNet)
	wantTE := effective(t, orig.TextEncoder)
	if len(want) == 0 {
		t.Fatal("fixture LoRA has no U-Net adapters")
	}

	for _, f := range []lora.Format{lora.Diffusers, lora.Kohya} {
		path := filepath.Join(t.TempDir(), "rex-"+string(f)+".safetensors")
		if err := u.ExportLoRA(ck.ID, f, path); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		got, err := lora.Load(path, Targets(pl))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if got.Format != f {
			t.Errorf("file read back as %s, want %s", got.Format, f)
		}
		for name, adapters := range map[string][2]map[string][2][]float32{
			"unet": {want, effective(t, got.UNet)}, "text": {wantTE, effective(t, got.TextEncoder)},
		} {
			w, g := adapters[0], adapters[1]
			if len(g) != len(w) {
				t.Errorf("%s %s: %d adapters, want %d", f, name, len(g), len(w))
			}
			worst := 0.0
			for k, wv := range w {
				gv, ok := g[k]
				if !ok {
					t.Errorf("%s: adapter %s missing", f, k)
					continue
				}
				for j := 0; j < 2; j++ {
					for i := range wv[j] {
						worst = math.Max(worst, math.Abs(float64(gv[j][i]-wv[j][i]))/(1e-6+math.Abs(float64(wv[j][i]))))
					}
				}
			}
			if worst > 1e-6 {
				t.Errorf("%s %s: worst relative error %g", f, name, worst)
			}
			t.Logf("%s %s: %d adapters, worst relative error %g", f, name, len(g), worst)
		}
		got.Release()
		sf, err := safetensors.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		meta := lora.ParseMeta(sf.Metadata)
		sf.Close()
		if meta.Identifier != "sks" || meta.ClassNoun != "dog" || meta.Steps != 800 || meta.BaseModelHash != bm.Hash {
			t.Errorf("%s metadata %+v", f, meta)
		}
	}

	// The run's card offers the export; the dialog names the checkpoint.
	u.Jobs.Refresh()
	card := u.Jobs.Card(run.ID)
	if card == nil || !card.Export.Visible() {
		t.Fatal("no Export LoRA button on the personalize run")
	}
	test.Tap(card.Export)
	if d := texts(topOverlay(u)); !strings.Contains(d, "DreamBooth LoRA, step 800") {
		t.Errorf("export dialog:\n%s", d)
	}
	if name := loraFileName(u, run.ID, lora.Kohya); name != "rex-kohya.safetensors" {
		t.Errorf("file name %q", name)
	}
}

// TestCompare_rating generates the base, DreamBooth-only and aligned
// models' images for one prompt and seed side by side (two LoRA fixtures
// stand for the trained models), then stores "B is better" as a rating
// between the DreamBooth and aligned runs.
func TestCompare_rating(t *testing.T) {
	u := newTestUI(t, true, nil)
	bm := tinyModel(t, u)
	s := newSubject(t, u, "Rex", "dog")
	db, _ := loraRun(t, u, store.KindPersonalize, s, bm, "lora_kohya.safetensors", 800)
	al, _ := loraRun(t, u, store.KindAlign, s, bm, "lora_peft.safetensors", 50)

	u.Compare.ShowFor(s.ID)
	if v := u.Compare.Variants(); len(v) != 3 || v[1].RunID != db.ID || v[2].RunID != al.ID {
		t.Fatalf("variants %+v", v)
	}
	if !u.Compare.BetterB.Disabled() {
		t.Error("rating enabled before any image")
	}
	u.Compare.Seed.SetText("11")
	u.Compare.Steps.SetText("2")
	test.Tap(u.Compare.Start)
	if len(u.Compare.Panels) != 3 {
		t.Fatalf("%d panels", len(u.Compare.Panels))
	}
	for _, p := range u.Compare.Panels {
		if r, err := u.Runner.Wait(p.RunID, time.Minute); err != nil || r.Status != store.StatusDone {
			t.Fatalf("%s: %+v %v", p.Choice.Label, r, err)
		}
	}
	eventually(t, 5*time.Second, "three images", func() bool {
		for _, p := range u.Compare.Panels {
			if p.Image.ID == "" {
				return false
			}
		}
		return true
	})
	var pix []*[]byte
	for _, p := range u.Compare.Panels {
		g := p.Image
		if g.Seed != 11 || g.Prompt != "a photo of sks dog cooking a gourmet meal" || g.CheckpointID != p.Choice.CheckpointID || g.Sampler.Steps != 2 {
			t.Errorf("%s image %+v", p.Choice.Label, g)
		}
		data, _ := u.DB.GalleryImagePNG(g.ID)
		pix = append(pix, &data)
	}
	a, _ := decodeBytes(*pix[0])
	b, _ := decodeBytes(*pix[1])
	if samePixels(a, b) {
		t.Error("the LoRA changed nothing: base and DreamBooth images are equal")
	}
	if u.Compare.A.Selected != "DreamBooth only" || u.Compare.B.Selected != "Aligned" || u.Compare.BetterB.Disabled() {
		t.Fatalf("A %q B %q", u.Compare.A.Selected, u.Compare.B.Selected)
	}
	test.Tap(u.Compare.BetterB)
	rs, err := u.DB.Ratings()
	if err != nil || len(rs) != 1 {
		t.Fatalf("%d ratings, %v", len(rs), err)
	}
	r := rs[0]
	if r.Choice != store.ChoiceB || r.RunA != db.ID || r.RunB != al.ID || r.ImageA != u.Compare.Panels[1].Image.ID ||
		r.ImageB != u.Compare.Panels[2].Image.ID || r.Prompt != "a photo of sks dog cooking a gourmet meal" {
		t.Errorf("rating %+v", r)
	}
	if rate, n, _ := u.DB.PreferenceRate(al.ID, db.ID); rate != 1 || n != 1 {
		t.Errorf("aligned preferred %v of %d", rate, n)
	}
	if !strings.Contains(u.Compare.Tally.Text, "in 0% of 1 rating") {
		t.Errorf("tally %q", u.Compare.Tally.Text)
	}
}

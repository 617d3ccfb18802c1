package evaluate

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/instructbooth/instructbooth/internal/testenv"
	"github.com/instructbooth/instructbooth/model/generate"
	"github.com/instructbooth/instructbooth/model/metrics"
	"github.com/instructbooth/instructbooth/model/sd"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.Close()
	os.Exit(code)
}

func TestPrompts(t *testing.T) {
	for _, live := range []bool{true, false} {
		ps := DreamBenchPrompts(live)
		if len(ps) != 25 {
			t.Fatalf("live=%v: %d prompts", live, len(ps))
		}
		if got := ps[0].Fill("sks", "dog"); got != "a sks dog in the jungle" {
			t.Errorf("first: %q", got)
		}
		if got := ps[24].Fill("sks", "backpack"); got != "a cube shaped sks backpack" {
			t.Errorf("last: %q", got)
		}
		seen := map[string]bool{}
		for _, p := range ps {
			if seen[p.Template] {
				t.Errorf("duplicate %q", p.Template)
			}
			seen[p.Template] = true
		}
	}
	if got := DreamBenchPrompts(true)[13].Fill("sks", "cat"); got != "a sks cat wearing a black top hat and a monocle" {
		t.Errorf("live 14: %q", got)
	}
	if got := DreamBenchPrompts(false)[14].Fill("sks", "vase"); got != "a sks vase floating in an ocean of milk" {
		t.Errorf("object 15: %q", got)
	}
	for class, group := range map[string]string{"cat": "pets", "Dog": "pets", "teddy bear": "toys", "monster toy": "toys",
		"wooden pot": "containers", "cup": "containers", "motorbike": "vehicles", "bike": "vehicles", "spaceship": ""} {
		if g := ActivityGroup(class); g != group {
			t.Errorf("ActivityGroup(%q) = %q, want %q", class, g, group)
		}
	}
	n := 0
	for _, g := range ActivityGroups() {
		ps, err := ActivityPrompts(g)
		if err != nil || len(ps) != 5 {
			t.Fatalf("%s: %d prompts, %v", g, len(ps), err)
		}
		n += len(ps)
	}
	if n != 20 {
		t.Errorf("%d activity prompts", n)
	}
	ps, err := LoadPrompts("activity", "cup")
	if err != nil || ps[0].Fill("sks", "cup") != "a sks cup with popcorn in it" {
		t.Errorf("activity cup: %v %v", ps, err)
	}
	if got := (Prompt{Template: "a {} playing soccer"}).Fill("", "dog"); got != "a dog playing soccer" {
		t.Errorf("no identifier: %q", got)
	}
	if got := (Prompt{Template: "{identifier} as a {class}"}).Fill("sks", "dog"); got != "sks as a dog" {
		t.Errorf("named placeholders: %q", got)
	}
	if ps, _ := LoadPrompts("dreambench", "dog"); ps[10].Category != "accessorization" {
		t.Errorf("dreambench dog: %v", ps[10])
	}
	if ps, _ := LoadPrompts("dreambench", "teapot"); ps[10].Category != "recontextualization" {
		t.Errorf("dreambench teapot: %v", ps[10])
	}
	for _, spec := range []string{"activity:planets", "dreambench:alive", "/nonexistent/prompts.txt"} {
		if _, err := LoadPrompts(spec, "dog"); err == nil {
			t.Errorf("%s: no error", spec)
		}
	}
	if _, err := LoadPrompts("activity", "spaceship"); err == nil || !strings.Contains(err.Error(), "activity:GROUP") {
		t.Errorf("unknown class: %v", err)
	}
	dir := t.TempDir()
	f := filepath.Join(dir, "p.txt")
	os.WriteFile(f, []byte("# c\n\n  riding a horse \na {} on {class} island\n"), 0o644)
	ps, err = ReadPromptFile(f)
	if err != nil || len(ps) != 2 || ps[0].Fill("sks", "dog") != "a sks dog riding a horse" || ps[1].Fill("sks", "dog") != "a sks dog on dog island" {
		t.Errorf("file: %v %v", ps, err)
	}
	os.WriteFile(f, []byte("# only a comment\n"), 0o644)
	if _, err := ReadPromptFile(f); err == nil || !strings.Contains(err.Error(), f) {
		t.Errorf("empty file: %v", err)
	}
}

// fakeText scores pair i as len(prompt) + the image's red value/100.
type fakeText struct{ calls int }

func (f *fakeText) Name() string { return "fake-t" }
func (f *fakeText) Score(ctx context.Context, prompts []string, imgs []image.Image) ([]float64, error) {
	f.calls++
	out := make([]float64, len(imgs))
	for i, im := range imgs {
		r, _, _, _ := im.At(0, 0).RGBA()
		out[i] = float64(len(prompts[i])) + float64(r>>8)/100
	}
	return out, nil
}

// fakeSubject scores an image by its red value relative to the number of
// references.
type fakeSubject struct{}

func (fakeSubject) Name() string { return "fake-s" }
func (fakeSubject) ScoreSubject(ctx context.Context, refs, imgs []image.Image) ([]float64, error) {
	out := make([]float64, len(imgs))
	for i, im := range imgs {
		r, _, _, _ := im.At(0, 0).RGBA()
		out[i] = float64(r>>8) / float64(len(refs))
	}
	return out, ctx.Err()
}

func solid(v uint8, w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for i := 0; i < len(img.Pix); i += 4 {
		img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = v, 255-v, 100, 255
	}
	return img
}

// synthetic builds 2 runs x 3 prompts x 2 images with known red values.
func synthetic() []Sample {
	texts := []string{"a x", "a xx | y", "a xxx"}
	var s []Sample
	for ri, run := range []string{"base", "tuned"} {
		for p, tx := range texts {
			for k := 0; k < 2; k++ {
				s = append(s, Sample{Run: run, Prompt: p, Text: tx, Index: k, Seed: uint64(10 + 2*p + k),
					Image: solid(uint8(10*ri+20*p+k), 40, 24)})
			}
		}
	}
	return s
}

func TestScoreAndReport(t *testing.T) {
	samples := synthetic()
	refs := []image.Image{solid(0, 4, 4), solid(0, 4, 4)}
	ft := &fakeText{}
	rep, err := Score(context.Background(), samples, refs, []MetricSource{Static(ft), Static(fakeSubject{})}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ft.calls != 1 { // 12 samples fit one chunk
		t.Errorf("%d scorer calls", ft.calls)
	}
	if strings.Join(rep.Runs, ",") != "base,tuned" || strings.Join(rep.Metrics, ",") != "fake-t,fake-s" || len(rep.Prompts) != 3 {
		t.Fatalf("report %v %v %v", rep.Runs, rep.Metrics, rep.Prompts)
	}
	// Known values: fake-t for run ri, prompt p, image k = len(text) + (10ri+20p+k)/100.
	for ri, run := range rep.Runs {
		var vals []float64
		for p, tx := range []string{"a x", "a xx | y", "a xxx"} {
			var pv []float64
			for k := 0; k < 2; k++ {
				pv = append(pv, float64(len(tx))+float64(10*ri+20*p+k)/100)
			}
			g := rep.PerPrompt(run, "fake-t")[p]
			want := metrics.Summarize(pv)
			if g.Key != tx || math.Abs(g.Mean-want.Mean) > 1e-12 || math.Abs(g.StdErr-0.005) > 1e-12 || g.N != 2 {
				t.Errorf("%s prompt %d: %+v, want %+v", run, p, g, want)
			}
			vals = append(vals, pv...)
		}
		s, want := rep.Summary(run, "fake-t"), metrics.Summarize(vals)
		if s.N != 6 || math.Abs(s.Mean-want.Mean) > 1e-12 || math.Abs(s.StdErr-want.StdErr) > 1e-12 {
			t.Errorf("%s: %+v, want %+v", run, s, want)
		}
		if s := rep.Summary(run, "fake-s"); math.Abs(s.Mean-(float64(10*ri+20)+0.5)/2) > 1e-12 {
			t.Errorf("%s fake-s mean %g", run, s.Mean)
		}
	}

	// Same prompt and image number: tuned - base = 0.10 for every image.
	if d := rep.Paired("tuned", "base", "fake-t"); d.N != 6 || math.Abs(d.Mean-0.1) > 1e-12 || d.StdErr > 1e-12 {
		t.Errorf("paired tuned - base: %+v, want 0.1 ± 0 over 6", d)
	}
	if d := rep.Paired("tuned", "nothing", "fake-t"); d.N != 0 {
		t.Errorf("paired with a missing run: %+v", d)
	}

	md := rep.Markdown()
	for _, want := range []string{"| base | ", "| tuned | ", "| tuned − base | +0.1000 ± 0.0000 |", "## fake-t per prompt", "## fake-s per prompt", `a xx \| y`} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	var buf bytes.Buffer
	if err := rep.WriteSummaryCSV(&buf); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil || len(rows) != 5 || rows[1][0] != "base" || rows[1][1] != "fake-t" || rows[1][2] != "6" {
		t.Errorf("summary csv %v %v", rows, err)
	}
	buf.Reset()
	rep.WriteScoresCSV(&buf)
	rows, err = csv.NewReader(&buf).ReadAll()
	if err != nil || len(rows) != 13 || rows[3][2] != "a xx | y" || rows[3][4] != "12" {
		t.Errorf("scores csv %v %v", rows, err)
	}

	dir := t.TempDir()
	paths, err := rep.WriteFiles(dir)
	if err != nil || len(paths) != 6 {
		t.Fatalf("WriteFiles: %v %v", paths, err)
	}
	chart := decode(t, filepath.Join(dir, FileChart))
	if w, h := ChartSize(2, 2); chart.Bounds() != image.Rect(0, 0, w, h) {
		t.Errorf("chart %v, want %dx%d", chart.Bounds(), w, h)
	}
	// Bars in the run colours are drawn.
	counts := map[color.NRGBA]int{}
	for y := 0; y < chart.Bounds().Dy(); y++ {
		for x := 0; x < chart.Bounds().Dx(); x++ {
			counts[color.NRGBAModel.Convert(chart.At(x, y)).(color.NRGBA)]++
		}
	}
	for i := 0; i < 2; i++ {
		if counts[runColors[i]] < 200 {
			t.Errorf("run %d colour: %d pixels", i, counts[runColors[i]])
		}
	}
	grid := decode(t, filepath.Join(dir, FileGrid))
	gw, gh, tw, th := rep.GridSize()
	if grid.Bounds() != image.Rect(0, 0, gw, gh) || tw != 40 || th != 24 {
		t.Fatalf("grid %v, want %dx%d (thumb %dx%d)", grid.Bounds(), gw, gh, tw, th)
	}
	// The thumbnail of run tuned, prompt 2, image 1 sits at its cell.
	x := gridLabelW + 1*(2*(tw+gridGap)+gridRunGap) + 1*(tw+gridGap)
	y := gridHeadH + 2*(th+gridGap)
	if r, _, _, _ := grid.At(x+5, y+5).RGBA(); r>>8 != 10+40+1 {
		t.Errorf("grid cell red %d, want %d", r>>8, 51)
	}

	if _, err := Score(context.Background(), samples, nil, []MetricSource{Static(fakeSubject{})}, nil); err == nil {
		t.Error("subject metric without references: no error")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Score(ctx, samples, refs, []MetricSource{Static(ft)}, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	bad := MetricSource{Name: "x", Open: func() (Metric, func(), error) { return nil, nil, fmt.Errorf("boom") }}
	if _, err := Score(context.Background(), samples, refs, []MetricSource{bad}, nil); err == nil || !strings.Contains(err.Error(), "metric x: boom") {
		t.Errorf("open error: %v", err)
	}
}

func decode(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestProgressString(t *testing.T) {
	p := Progress{Phase: "generate", Run: "base", Done: 10, Total: 50, Elapsed: 5 * time.Second}
	if got := p.String(); got != "generate base: 10/50 steps  2.00 it/s  ETA 20s" {
		t.Errorf("%q", got)
	}
	p = Progress{Phase: "score", Run: "base", Metric: "clip-t", Done: 4, Total: 8, Elapsed: time.Second}
	if got := p.String(); got != "score clip-t base: 4/8 images  4.00 it/s  ETA 1s" {
		t.Errorf("%q", got)
	}
}

func TestReadReferenceImages(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadReferenceImages(dir); err == nil {
		t.Error("empty folder: no error")
	}
	for i, n := range []string{"b.png", "a.PNG"} {
		f, _ := os.Create(filepath.Join(dir, n))
		png.Encode(f, solid(uint8(i), 3+i, 2))
		f.Close()
	}
	imgs, err := ReadReferenceImages(dir)
	if err != nil || len(imgs) != 2 || imgs[0].Bounds().Dx() != 4 {
		t.Fatalf("%d images, %v", len(imgs), err)
	}
	os.WriteFile(filepath.Join(dir, "c.jpg"), []byte("not a jpeg"), 0o644)
	if _, err := ReadReferenceImages(dir); err == nil || !strings.Contains(err.Error(), "c.jpg") {
		t.Errorf("bad file: %v", err)
	}
}

// TestGenerateImages: every run draws the same seeds (SeedFor), so two
// runs of the same model give identical images, equal to generate.Generate
// at that seed; cancelling stops with the images so far.
func TestGenerateImages(t *testing.T) {
	e := testenv.Engine(t)
	pl, err := sd.Load(e, filepath.Join(testenv.Fixtures(t), "sd-tiny", "diffusers"), sd.LoadOptions{Components: sd.CompAll})
	if err != nil {
		t.Fatal(err)
	}
	defer pl.Release()
	c := generate.Components{Tokenizer: pl.Tokenizer, Text: pl.Text, UNet: pl.UNet, VAE: pl.VAE, Schedule: pl.Schedule, Name: "sd-tiny"}
	setups := 0
	cfg := GenerateConfig{
		Components: c, Identifier: "sks", Class: "dog", ImagesPerPrompt: 2,
		Runs: []Run{{Name: "a"}, {Name: "b", Setup: func() (func(), error) {
			setups++
			return func() { setups-- }, nil
		}}},
		Prompts: []Prompt{{Template: "a {} on the beach"}},
		Params:  generate.Params{Steps: 1, Width: 64, Height: 64, Seed: 5, Sampler: "ddim"},
		OutDir:  t.TempDir(),
	}
	var last Progress
	s, err := GenerateImages(context.Background(), cfg, func(p Progress) { last = p })
	if err != nil {
		t.Fatal(err)
	}
	if len(s) != 4 || last.Done != 4 || last.Total != 4 || setups != 0 {
		t.Fatalf("%d samples, progress %+v, setups %d", len(s), last, setups)
	}
	want, err := generate.Generate(context.Background(), c, generate.Params{Prompt: "a sks dog on the beach", Steps: 1,
		Width: 64, Height: 64, Seed: 6, Sampler: "ddim"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{1, 3} {
		if s[i].Seed != 6 || s[i].Text != "a sks dog on the beach" || !bytes.Equal(s[i].Image.Pix, want.Images[0].RGB.Pix) {
			t.Errorf("sample %d (run %s, seed %d) differs from Generate at seed 6", i, s[i].Run, s[i].Seed)
		}
		if _, err := os.Stat(filepath.Join(cfg.OutDir, s[i].Path)); err != nil {
			t.Error(err)
		}
	}
	if bytes.Equal(s[0].Image.Pix, s[1].Image.Pix) {
		t.Error("seeds 5 and 6 drew the same image")
	}

	ctx, cancel := context.WithCancel(context.Background())
	s, err = GenerateImages(ctx, cfg, func(p Progress) {
		if p.Done == 2 { // the second image's step: the first is finished
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) || len(s) != 1 || setups != 0 {
		t.Errorf("cancelled: %v, %d samples, setups %d", err, len(s), setups)
	}
	cfg.Runs = []Run{{Name: "a/b"}}
	if _, err := GenerateImages(context.Background(), cfg, nil); err == nil {
		t.Error("run name with a slash: no error")
	}
}

package app

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"image"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/internal/testenv"
	"github.com/instructbooth/instructbooth/model/clip"
	"github.com/instructbooth/instructbooth/model/metrics"
	"github.com/instructbooth/instructbooth/store"
	"github.com/instructbooth/instructbooth/training/evaluate"
)

// TestEvaluate_job evaluates the base model against a LoRA checkpoint of
// a personalize run (the sd-tiny fixture LoRA) with the tiny CLIP as
// CLIP-T, 2 prompts x 1 image, cancelling after the first image and
// resuming: the run ends with exactly the 4 images (the first kept, seeds
// seed + p), each in the gallery with its variant's checkpoint and a
// CLIP-T score equal to scoring the stored PNG afresh; the run's metrics
// "clip-t/base" and "clip-t/dreambooth" are the means of those scores and
// equal summary.csv's; results.md, the CSV files, chart.png and grid.png
// are in the run's folder, and the card's Results view shows the table.
func TestEvaluate_job(t *testing.T) {
	u := newTestUI(t, true, trainerRegistry())
	bm := tinyModel(t, u)
	s := photoSubject(t, u)
	pr, ck := loraRun(t, u, store.KindPersonalize, s, bm, "lora_kohya.safetensors", 800)
	clipDir := filepath.Join(testenv.Fixtures(t), "rewards-tiny", "clip")
	cfg := EvaluateConfig{CheckpointID: ck.ID, Base: true, Metrics: []string{"clip_t"}, MetricPaths: map[string]string{"clip_t": clipDir},
		Prompts: []string{"a photo of {} in the snow", "a {} playing soccer"}, ImagesPerPrompt: 1, Steps: 2, Guidance: 7.5, Seed: 5}

	var mu sync.Mutex
	var runID string
	var once sync.Once
	u.Runner.Subscribe(func(up Update) {
		mu.Lock()
		id := runID
		mu.Unlock()
		if up.Run.ID == id && up.Preview != nil {
			once.Do(func() { u.Runner.Cancel(id) })
		}
	})
	run := store.Run{Kind: store.KindEvaluate, SubjectID: s.ID, BaseModelID: bm.ID, ParentID: pr.ID, Config: mustJSON(t, cfg),
		ID: "8d0f4b7e-2c1a-4e55-b1d3-6f0a9c2e7b41"}
	mu.Lock()
	runID = run.ID
	mu.Unlock()
	if err := u.Runner.Submit(&run); err != nil {
		t.Fatal(err)
	}
	got, err := u.Runner.Wait(run.ID, time.Minute)
	if err != nil || got.Status != store.StatusInterrupted {
		t.Fatalf("after cancel: %+v %v", got, err)
	}
	first, _ := u.DB.Gallery(store.GalleryFilter{RunID: run.ID})
	if len(first) != 1 || first[0].Seed != 5 || first[0].CheckpointID != "" || len(first[0].Scores) != 0 {
		t.Fatalf("gallery after cancelling at the first image: %+v", first)
	}
	if err := u.Runner.Resume(run.ID); err != nil {
		t.Fatal(err)
	}
	got, err = u.Runner.Wait(run.ID, 2*time.Minute)
	if err != nil || got.Status != store.StatusDone {
		t.Fatalf("after resume: %+v %v\n%s", got, err, u.RunLog(run.ID))
	}

	imgs, _ := u.DB.Gallery(store.GalleryFilter{RunID: run.ID})
	if len(imgs) != 4 || imgs[0].ID != first[0].ID {
		t.Fatalf("%d gallery images (first kept: %v)", len(imgs), len(imgs) > 0 && imgs[0].ID == first[0].ID)
	}
	byModel := map[string][]float64{}
	want := map[string]bool{"|a photo of sks dog in the snow|5": true, "|a sks dog playing soccer|6": true,
		ck.ID + "|a photo of sks dog in the snow|5": true, ck.ID + "|a sks dog playing soccer|6": true}
	for _, g := range imgs {
		k := g.CheckpointID + "|" + g.Prompt + "|" + strconv.FormatInt(g.Seed, 10)
		if !want[k] || g.SubjectID != s.ID || g.BaseModelID != bm.ID || g.Sampler.Steps != 2 || g.Sampler.Width != 64 {
			t.Errorf("unexpected image %+v", g)
		}
		delete(want, k)
		v, ok := g.Scores["clip-t"]
		if !ok || math.IsNaN(v) || len(g.Scores) != 1 {
			t.Errorf("scores %v", g.Scores)
		}
		name := "base"
		if g.CheckpointID == ck.ID {
			name = "dreambooth"
		}
		byModel[name] = append(byModel[name], v)
	}

	// Every stored score is CLIP-T of the stored PNG, computed afresh.
	tok, err := clip.LoadHF(filepath.Join(bm.Path, "tokenizer"))
	if err != nil {
		t.Fatal(err)
	}
	var prompts []string
	var pics []image.Image
	for _, g := range imgs {
		b, _ := u.DB.GalleryImagePNG(g.ID)
		img, err := decodeBytes(b)
		if err != nil {
			t.Fatal(err)
		}
		prompts, pics = append(prompts, g.Prompt), append(pics, img)
	}
	var fresh []float64
	err = u.Runner.WithGPU(func(e *gpu.Engine, _ *Models) error {
		m, err := clip.LoadModel(e, clipDir, clip.LoadOptions{})
		if err != nil {
			return err
		}
		defer m.Release()
		fresh, err = metrics.NewCLIPT(m, tok).Score(context.Background(), prompts, pics)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("CLIP-T stored %v, recomputed %v", byModel, fresh)
	for i, g := range imgs {
		if d := math.Abs(fresh[i] - g.Scores["clip-t"]); d > 1e-5 {
			t.Errorf("image %d: stored CLIP-T %v, recomputed %v", i, g.Scores["clip-t"], fresh[i])
		}
	}

	// Run metrics = means of the gallery scores = summary.csv.
	dir := RunDir(u.DB, run.ID)
	f, err := os.Open(filepath.Join(dir, evaluate.FileSummary))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil || len(rows) != 3 {
		t.Fatalf("summary.csv: %v %v", rows, err)
	}
	for _, row := range rows[1:] {
		name, mean := row[0], row[3]
		want := (byModel[name][0] + byModel[name][1]) / 2
		csvMean, _ := strconv.ParseFloat(mean, 64)
		pts := got.Metrics["clip-t/"+name]
		if row[1] != "clip-t" || row[2] != "2" || len(pts) != 1 || pts[0].Value != csvMean || math.Abs(csvMean-want) > 1e-12 || pts[0].Step != got.Progress.Total {
			t.Errorf("%s: summary %v, run metric %v, mean of gallery scores %v", name, row, pts, want)
		}
	}
	for _, name := range []string{evaluate.FileMarkdown, evaluate.FilePerPrompt, evaluate.FileScores, evaluate.FileChart, evaluate.FileGrid, RunLogFile} {
		if st, err := os.Stat(filepath.Join(dir, name)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", name, err)
		}
	}

	// The card opens the results: the table of results.md and the chart.
	u.Jobs.Refresh()
	card := u.Jobs.Card(run.ID)
	if card == nil || !card.Results.Visible() || !card.Gallery.Visible() {
		t.Fatal("the evaluation's card offers no Results")
	}
	res, err := u.LoadResults(run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Table) != 3 || strings.Join(res.Table[0], ",") != "run,clip-t" || res.Table[1][0] != "base" || res.Table[2][0] != "dreambooth" ||
		!strings.Contains(res.Table[1][1], " ± ") || res.Chart == nil {
		t.Errorf("results table %q, chart %v", res.Table, res.Chart != nil)
	}
	t.Logf("results table %q", res.Table)
	test.Tap(card.Results)
	if d := texts(topOverlay(u)); !strings.Contains(d, "dreambooth") || !strings.Contains(d, res.Table[2][1]) {
		t.Errorf("results view:\n%s", d)
	}
}

// TestEvaluate_config: the models compared and the metric specification
// follow the configuration; a metric without a model path is refused
// before any work, naming it.
func TestEvaluate_config(t *testing.T) {
	u := newTestUI(t, false, trainerRegistry())
	bm := tinyModel(t, u)
	s := newSubject(t, u, "Rex", "dog")
	_, dbCk := loraRun(t, u, store.KindPersonalize, s, bm, "lora_kohya.safetensors", 800)
	ar, alCk := loraRun(t, u, store.KindAlign, s, bm, "lora_diffusers.safetensors", 50)
	ar.Config = mustJSON(t, AlignConfig{CheckpointID: dbCk.ID})
	if err := u.DB.PutRun(&ar); err != nil {
		t.Fatal(err)
	}
	cmp := ComparisonCheckpoints(u.DB, alCk.ID)
	if len(cmp) != 1 || cmp[0] != dbCk.ID || len(ComparisonCheckpoints(u.DB, dbCk.ID)) != 0 {
		t.Fatalf("comparison of the aligned checkpoint: %v", cmp)
	}
	ms, err := evalModels(u.DB, EvaluateConfig{CheckpointID: alCk.ID, CheckpointIDs: cmp, Base: true})
	if err != nil || len(ms) != 3 || ms[0] != (evalModel{Name: "base"}) || ms[1] != (evalModel{"dreambooth", dbCk.ID}) || ms[2] != (evalModel{"aligned", alCk.ID}) {
		t.Errorf("models %+v %v", ms, err)
	}
	if ms, _ := evalModels(u.DB, EvaluateConfig{}); len(ms) != 1 || ms[0].Name != "base" {
		t.Errorf("no checkpoint: %+v", ms)
	}
	spec, err := metricSpec(EvaluateConfig{Metrics: []string{"clip_t:/m/clip", "image_reward", "dino"},
		MetricPaths: map[string]string{"imagereward": "/m/ir.pt", "dino": "/m/dino.pth"}})
	if err != nil || spec != "clip-t:/m/clip,imagereward:/m/ir.pt,dino:/m/dino.pth" {
		t.Errorf("spec %q, %v", spec, err)
	}
	if _, err := metricSpec(EvaluateConfig{Metrics: []string{"clip_t", "pickscore:/m/ps"}}); err == nil || !strings.Contains(err.Error(), "no model file for clip-t") {
		t.Errorf("missing path: %v", err)
	}
	run := store.Run{Kind: store.KindEvaluate, SubjectID: s.ID, BaseModelID: bm.ID, Config: mustJSON(t, EvaluateConfig{Metrics: []string{"clip_t"}, Prompts: []string{"a {}"}})}
	if _, err := NewEvaluateJob(JobEnv{DB: u.DB, Run: run}); err == nil || !strings.Contains(err.Error(), "NAME:PATH") {
		t.Errorf("factory without metric paths: %v", err)
	}
}

// TestEvaluate_form starts an evaluation of an aligned model from the
// subject's page: the run compares the base model, the DreamBooth
// checkpoint the alignment started from and the aligned one, with the
// metrics (and their model paths) typed in the form, which the next form
// offers again.
func TestEvaluate_form(t *testing.T) {
	u := newTestUI(t, false, trainerRegistry())
	bm := tinyModel(t, u)
	s := newSubject(t, u, "Rex", "dog")
	_, dbCk := loraRun(t, u, store.KindPersonalize, s, bm, "lora_kohya.safetensors", 800)
	ar, alCk := loraRun(t, u, store.KindAlign, s, bm, "lora_diffusers.safetensors", 50)
	ar.Config = mustJSON(t, AlignConfig{CheckpointID: dbCk.ID})
	if err := u.DB.PutRun(&ar); err != nil {
		t.Fatal(err)
	}
	const spec = "clip_t:/models/clip, dino:/models/dino.pth"
	open := func() *widget.Entry {
		u.OpenSubject(s.ID)
		test.Tap(u.Subject.Evaluate)
		form := topOverlay(u)
		for _, obj := range test.LaidOutObjects(form) {
			if a, ok := obj.(*widget.Accordion); ok {
				a.Open(0)
			}
		}
		for _, e := range entries(form) {
			if strings.Contains(e.Text, "clip_t") {
				return e
			}
		}
		t.Fatalf("no metrics field in\n%s", texts(form))
		return nil
	}
	m := open()
	m.SetText(spec)
	test.Tap(findButton(t, topOverlay(u), "Start"))
	runs, _ := u.DB.Runs(store.RunFilter{Kind: store.KindEvaluate})
	if len(runs) != 1 {
		t.Fatalf("%d evaluate runs", len(runs))
	}
	u.Runner.Wait(runs[0].ID, 30*time.Second) // fails: this UI has no GPU
	var cfg EvaluateConfig
	if err := json.Unmarshal(runs[0].Config, &cfg); err != nil {
		t.Fatal(err)
	}
	if !cfg.Base || cfg.CheckpointID != alCk.ID || len(cfg.CheckpointIDs) != 1 || cfg.CheckpointIDs[0] != dbCk.ID || runs[0].ParentID != ar.ID ||
		strings.Join(cfg.Metrics, ";") != "clip_t:/models/clip;dino:/models/dino.pth" {
		t.Errorf("config %+v, parent %s", cfg, runs[0].ParentID)
	}
	if got := open().Text; got != spec {
		t.Errorf("the next form offers metrics %q", got)
	}
}

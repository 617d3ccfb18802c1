package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/internal/testenv"
	"github.com/instructbooth/instructbooth/model/generate"
	"github.com/instructbooth/instructbooth/store"
	"github.com/instructbooth/instructbooth/training/toyworld"
	"github.com/instructbooth/instructbooth/training/toyworld/demo"
)

// toyTinyModel saves a randomly initialised toy model of the default
// structure (4x4 pixel codec, 32x32 images) with a small text encoder, as
// training/toyworld/demo's tests do, and returns its folder.
func toyTinyModel(t *testing.T) string {
	t.Helper()
	e := testenv.Engine(t)
	m, err := toyworld.NewModel(e, toyworld.SmallConfig(), 3)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Release()
	dir := filepath.Join(t.TempDir(), "toy-base")
	if err := m.Save(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// newToyUI is newTestUI with Options.ToyModel giving toyDir.
func newToyUI(t *testing.T, gpuToo bool, reg Registry, toyDir string) *UI {
	t.Helper()
	a := test.NewTempApp(t)
	db, err := store.Open(filepath.Join(t.TempDir(), store.FileName), nil)
	if err != nil {
		t.Fatal(err)
	}
	var e *gpu.Engine
	if gpuToo {
		e = testenv.Engine(t)
	}
	u := New(a, Options{DB: db, Registry: reg, KeepEngine: true, ToyModel: func() (string, error) { return toyDir, nil },
		Open: func(string) (*gpu.Engine, error) {
			if e == nil {
				return nil, gpu.ErrNoAdapter
			}
			return e, nil
		}})
	t.Cleanup(func() {
		u.Close()
		if err := db.Check(); err != nil {
			t.Errorf("store check: %v", err)
		}
		db.Close()
	})
	return u
}

// demoRegistry is trainerRegistry with demo runs of QuickOptions size.
func demoRegistry() Registry {
	reg := trainerRegistry()
	reg[store.KindDemo] = DemoJobFactory(demo.QuickOptions)
	return reg
}

// TestToyWorld_seed: seeding an empty database with a toy model folder
// adds the toy subject (its five photos are the toy world's renders at
// 128 pixels) and the toy base model beside the drawn demo subjects, and
// again changes nothing; a seeding whose model cannot be found fails
// clearly; a new folder moves the model's record. An existing library
// gets the toy world from the Library's button; the toy subject's forms
// default to the toy reward and the builtin metrics, which the jobs
// accept, and its runs use the toy model whatever the default is.
func TestToyWorld_seed(t *testing.T) {
	dir := toyTinyModel(t)
	db, err := store.Open(filepath.Join(t.TempDir(), store.FileName), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	from := func() (string, error) { return dir, nil }
	if err := SeedDemoWith(db, from); err != nil {
		t.Fatal(err)
	}
	if err := SeedDemoWith(db, from); err != nil {
		t.Fatal(err)
	}
	subs, _ := db.Subjects()
	if len(subs) != 4 {
		t.Fatalf("%d subjects after seeding twice, want 3 drawings and the toy subject", len(subs))
	}
	s, err := db.Subject(ToySubjectID)
	if err != nil {
		t.Fatal(err)
	}
	if s.Class != "star" || s.Identifier != "sks" || !strings.Contains(s.Description, "built-in demo") || len(s.Images) != 5 {
		t.Errorf("toy subject %+v", s)
	}
	for i, sc := range toyworld.TheSubject().Photos(1, 5) {
		want, _ := toyworld.Render(sc, 128)
		b, err := db.SubjectImage(s.ID, s.Images[i].Hash)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeBytes(b)
		if err != nil {
			t.Fatal(err)
		}
		if !sameImage(got, want) {
			t.Errorf("photo %d (%s) is not the toy world's render of the subject", i, s.Images[i].Name)
		}
	}
	bm, err := db.BaseModel(ToyModelID)
	if err != nil || bm.Path != dir || bm.Arch != ToyArch || bm.Size <= 0 {
		t.Fatalf("toy base model %+v, %v", bm, err)
	}
	if n := NativeSize(dir); n != 32 {
		t.Errorf("NativeSize of the toy model %d, want 32", n)
	}
	moved := filepath.Join(t.TempDir(), "moved")
	if err := os.Rename(dir, moved); err != nil {
		t.Fatal(err)
	}
	dir = moved
	if _, got, err := SeedToyWorld(db, dir); err != nil || got.Path != dir || got.Added != bm.Added {
		t.Errorf("after the model moved: %+v, %v", got, err)
	}
	if _, _, err := SeedToyWorld(db, t.TempDir()); err == nil || !strings.Contains(err.Error(), "not a diffusers folder") {
		t.Errorf("a folder without a model: %v", err)
	}
	empty, err := store.Open(filepath.Join(t.TempDir(), store.FileName), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer empty.Close()
	if err := SeedDemoWith(empty, func() (string, error) { return "", fmt.Errorf("no model in this build") }); err == nil || !strings.Contains(err.Error(), "no model in this build") {
		t.Errorf("seeding without the model: %v", err)
	}

	// An existing library: the Library offers the toy world.
	u := newToyUI(t, false, demoRegistry(), dir)
	sdTiny := tinyModel(t, u) // the default base model
	if !u.Library.AddToy.Visible() {
		t.Fatal("the Library does not offer the toy world")
	}
	test.Tap(u.Library.AddToy)
	eventually(t, 10*time.Second, "the toy subject's page", func() bool { return u.Subject.ID() == ToySubjectID })
	if u.Library.AddToy.Visible() || !u.Subject.TryIt.Visible() {
		t.Errorf("after adding: Library button shown %v, Try the whole method shown %v", u.Library.AddToy.Visible(), u.Subject.TryIt.Visible())
	}
	if bm, _ := u.DefaultBaseModel(); bm.ID != sdTiny.ID {
		t.Errorf("adding the toy world changed the default base model to %s", bm.Name)
	}
	toy, _ := u.DB.Subject(ToySubjectID)
	// The demo's DDPO settings and both prompt kinds.
	if a, d := DefaultAlignConfig(toy), demo.DefaultOptions("", ""); a.Reward != "toyworld" || len(a.Prompts) != 2*len(demo.TrainActivities) ||
		a.Prompts[0] != "a sks star on the grass" || a.Prompts[1] != "a star on the grass" ||
		a.SamplesPerPrompt != d.PerPrompt || a.PooledStd != d.PooledStd || a.LearningRate != float64(d.LR) || a.Epochs != d.Epochs || a.AccumBatches != d.AccumBatches ||
		a.TimestepFraction != d.TimestepFraction || a.EarlyFraction != d.EarlyFraction || a.StepBaseline != d.StepBaseline {
		t.Errorf("toy align defaults: %+v", a)
	}
	if err := checkRewardSpec("toyworld"); err != nil {
		t.Errorf("the toyworld reward: %v", err)
	}
	if spec, err := metricSpec(EvaluateConfig{Metrics: []string{"toy_align", "toyworld-fidelity", "clip_t:/m/clip"}}); err != nil || spec != "toyworld-align,toyworld-fidelity,clip-t:/m/clip" {
		t.Errorf("metric spec %q, %v", spec, err)
	}
	if _, err := metricSpec(EvaluateConfig{Metrics: []string{"toy_fidelity:/m/x"}}); err == nil || !strings.Contains(err.Error(), "needs no model file") {
		t.Errorf("a path for a builtin metric: %v", err)
	}

	// The Evaluate form on the toy subject: the builtin metrics, the toy
	// model; the job accepts the configuration.
	test.Tap(u.Subject.Evaluate)
	form := topOverlay(u)
	for _, obj := range test.LaidOutObjects(form) {
		if a, ok := obj.(*widget.Accordion); ok {
			a.Open(0)
		}
	}
	if txt := texts(form); !strings.Contains(txt, "toy_align, toy_fidelity") || !strings.Contains(txt, "a {} wearing a hat on the grass") {
		t.Errorf("the toy subject's Evaluate form:\n%s", txt)
	}
	test.Tap(findButton(t, form, "Start"))
	runs, _ := u.DB.Runs(store.RunFilter{Kind: store.KindEvaluate})
	if len(runs) != 1 || runs[0].BaseModelID != ToyModelID || runs[0].SubjectID != ToySubjectID {
		t.Fatalf("evaluate runs %+v", runs)
	}
	u.Runner.Wait(runs[0].ID, 30*time.Second) // fails: this UI has no GPU
	if _, err := NewEvaluateJob(JobEnv{DB: u.DB, Run: runs[0]}); err != nil {
		t.Errorf("the evaluate job refuses the toy subject's configuration: %v", err)
	}
	if u.App.Preferences().String(PrefEvalMetrics) != "" {
		t.Error("the toy subject's metrics became the remembered ones")
	}
}

func sameImage(a, b image.Image) bool {
	if a.Bounds().Size() != b.Bounds().Size() {
		return false
	}
	for y := 0; y < a.Bounds().Dy(); y++ {
		for x := 0; x < a.Bounds().Dx(); x++ {
			r1, g1, b1, a1 := a.At(a.Bounds().Min.X+x, a.Bounds().Min.Y+y).RGBA()
			r2, g2, b2, a2 := b.At(b.Bounds().Min.X+x, b.Bounds().Min.Y+y).RGBA()
			if r1 != r2 || g1 != g2 || b1 != b2 || a1 != a2 {
				return false
			}
		}
	}
	return true
}

// TestDemo_job runs the whole method (QuickOptions sizes) on a tiny
// random toy model from the toy subject's "Try the whole method" button,
// cancels it when DDPO starts and resumes it: the resumed run skips the
// finished DreamBooth stage and finishes. The run's metrics hold the
// DreamBooth loss per step, the DDPO reward per epoch and the mean text
// and subject fidelity of each model, equal to the means of the gallery
// images' scores, which are the toy scores of the stored PNGs computed
// afresh; the results view shows the table, the rewards and the grid.
func TestDemo_job(t *testing.T) {
	dir := toyTinyModel(t)
	u := newToyUI(t, true, demoRegistry(), dir)
	if _, err := u.AddToyWorld(); err != nil {
		t.Fatal(err)
	}
	u.OpenSubject(ToySubjectID)
	if !u.Subject.TryIt.Visible() {
		t.Fatal("no Try the whole method on the toy subject's page")
	}

	var mu sync.Mutex
	var phases []string
	cancelled := false
	u.Runner.Subscribe(func(up Update) {
		if up.Run.Kind != store.KindDemo || up.Phase == "" {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if len(phases) == 0 || phases[len(phases)-1] != up.Phase {
			phases = append(phases, up.Phase)
		}
		if !cancelled && strings.HasPrefix(up.Phase, "DDPO epoch") {
			cancelled = true
			u.Runner.Cancel(up.Run.ID)
		}
	})
	test.Tap(u.Subject.TryIt)
	test.Tap(findButton(t, topOverlay(u), "Start"))
	runs, _ := u.DB.Runs(store.RunFilter{Kind: store.KindDemo})
	if len(runs) != 1 || runs[0].SubjectID != ToySubjectID || runs[0].BaseModelID != ToyModelID {
		t.Fatalf("demo runs %+v", runs)
	}
	id := runs[0].ID
	r, err := u.Runner.Wait(id, 2*time.Minute)
	if err != nil || r.Status != store.StatusInterrupted {
		t.Fatalf("after cancelling: %s %q %v\n%s", r.Status, r.Error, err, u.RunLog(id))
	}
	out := DemoDir(u.DB, id)
	if _, err := os.Stat(filepath.Join(out, demo.DirDreamBooth, "unet", "diffusion_pytorch_model.safetensors")); err != nil {
		t.Fatalf("the cancelled run kept no DreamBooth model: %v", err)
	}
	if err := u.Runner.Resume(id); err != nil {
		t.Fatal(err)
	}
	r, err = u.Runner.Wait(id, 3*time.Minute)
	log := u.RunLog(id)
	if err != nil || r.Status != store.StatusDone {
		t.Fatalf("after resuming: %s %q %v\n%s", r.Status, r.Error, err, log)
	}
	t.Logf("phases %q\nlog:\n%s", phases, log)
	if !strings.Contains(log, "resuming from "+out) || !strings.Contains(log, "dreambooth: done before") || !strings.Contains(log, "ddpo: LoRA written") {
		t.Errorf("the resumed run did not continue from its folder:\n%s", log)
	}
	for _, want := range []string{"Class images", "DreamBooth", "DDPO epoch 1/1, sampling", "DDPO epoch 1/1, training", "DDPO epochs", "Evaluation"} {
		if !strings.Contains(strings.Join(phases, "|"), want) {
			t.Errorf("phase %q never reported (%q)", want, phases)
		}
	}
	o := demo.QuickOptions(out, dir)
	if loss := r.Metrics["loss"]; len(loss) != o.DBSteps || loss[0].Step != 1 || loss[o.DBSteps-1].Step != o.DBSteps {
		t.Errorf("loss history %v", loss)
	}
	if rw := r.Metrics["reward"]; len(rw) != o.Epochs || rw[0].Step != 1 || math.IsNaN(rw[0].Value) || rw[0].Value < 0 || rw[0].Value > 1 {
		t.Errorf("reward history %v", rw)
	}

	// The gallery: every evaluation image with both scores, which are the
	// toy scores of the stored PNG.
	imgs, _ := u.DB.Gallery(store.GalleryFilter{RunID: id})
	if want := 3 * len(o.HeldOut) * o.EvalImages; len(imgs) != want {
		t.Fatalf("%d gallery images, want %d", len(imgs), want)
	}
	var refs []image.Image
	for i := 1; i <= o.Photos; i++ {
		b, err := os.ReadFile(filepath.Join(out, demo.DirSubject, fmt.Sprintf("photo-%d.png", i)))
		if err != nil {
			t.Fatal(err)
		}
		img, err := decodeBytes(b)
		if err != nil {
			t.Fatal(err)
		}
		refs = append(refs, img)
	}
	sums := map[string]float64{}
	counts := map[string]int{}
	ctx := context.Background()
	for _, g := range imgs {
		if g.SubjectID != ToySubjectID || g.BaseModelID != ToyModelID || g.Sampler.Width != 32 || g.Sampler.Steps != o.EvalSteps || len(g.Scores) != 2 {
			t.Errorf("gallery image %+v", g)
		}
		b, err := u.DB.GalleryImagePNG(g.ID)
		if err != nil {
			t.Fatal(err)
		}
		img, err := decodeBytes(b)
		if err != nil {
			t.Fatal(err)
		}
		text, err := generate.ReadPNGText(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		model := ""
		for _, e := range text {
			if e.Key == generate.KeyModel {
				model = strings.TrimPrefix(e.Value, "toyworld ")
			}
		}
		a, err := demo.AlignScorer{}.Score(ctx, []string{g.Prompt}, []image.Image{img})
		if err != nil {
			t.Fatal(err)
		}
		f, err := demo.FidelityScorer{}.ScoreSubject(ctx, refs, []image.Image{img})
		if err != nil {
			t.Fatal(err)
		}
		if a[0] != g.Scores[demo.AlignMetric] || math.Abs(f[0]-g.Scores[demo.FidelityMetric]) > 1e-12 {
			t.Errorf("%s %q: stored scores %v, recomputed align %v fidelity %v", model, g.Prompt, g.Scores, a[0], f[0])
		}
		for m, v := range g.Scores {
			sums[m+"/"+model] += v
			counts[m+"/"+model]++
		}
	}
	for _, model := range []string{demo.RunBase, demo.RunDreamBooth, demo.RunInstructBooth} {
		for _, m := range []string{demo.AlignMetric, demo.FidelityMetric} {
			key := m + "/" + model
			pts := r.Metrics[key]
			if counts[key] != len(o.HeldOut)*o.EvalImages || len(pts) != 1 || math.Abs(pts[0].Value-sums[key]/float64(counts[key])) > 1e-12 {
				t.Errorf("%s: run metric %v, gallery mean %v of %d", key, pts, sums[key]/float64(counts[key]), counts[key])
			}
		}
	}

	// The card: Results and Images; the results view.
	u.Jobs.Refresh()
	card := u.Jobs.Card(id)
	if card == nil || !card.Results.Visible() || !card.Gallery.Visible() || !card.Log.Visible() {
		t.Fatal("the demo run's card offers no Results, Images or Log")
	}
	if card.Curve.Empty() || len(card.Curve.Series("reward")) != o.Epochs || len(card.Curve.Series("loss")) != o.DBSteps {
		t.Errorf("card curve: reward %v loss %v", card.Curve.Series("reward"), card.Curve.Series("loss"))
	}
	res, err := u.LoadResults(id)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("results %q\nnotes %q", res.Table, res.Notes)
	if len(res.Table) != 4 || !strings.HasPrefix(res.Table[0][1], "text fidelity") || !strings.HasPrefix(res.Table[0][2], "subject fidelity") ||
		res.Grid == nil || res.Chart == nil || len(res.Notes) < 2 || !strings.HasPrefix(res.Notes[0], "DDPO mean reward per epoch: ") {
		t.Fatalf("results %+v", res)
	}
	for i, model := range []string{demo.RunBase, demo.RunDreamBooth, demo.RunInstructBooth} {
		row := res.Table[i+1]
		want := fmt.Sprintf("%.4f ± ", r.Metrics[demo.AlignMetric+"/"+model][0].Value)
		if row[0] != model || !strings.HasPrefix(row[1], want) {
			t.Errorf("results row %q, want %s and text fidelity %q…", row, model, want)
		}
	}
	test.Tap(card.Results)
	if d := texts(topOverlay(u)); !strings.Contains(d, "instructbooth") || !strings.Contains(d, "DDPO mean reward per epoch") {
		t.Errorf("results view:\n%s", d)
	}
	var cfg DemoConfig
	if err := json.Unmarshal(r.Config, &cfg); err != nil || cfg.Seed != 1 {
		t.Errorf("config %s", r.Config)
	}
}

// TestDemoProgress: the stages become phases; DreamBooth's loss and the
// epochs' rewards become the metrics, the reward at its epoch.
func TestDemoProgress(t *testing.T) {
	for _, c := range []struct {
		in   demo.Progress
		want Progress
	}{
		{demo.Progress{Stage: demo.StageClassImages, Step: 3, Total: 24}, Progress{Phase: "Class images", Step: 3, Total: 24}},
		{demo.Progress{Stage: demo.StageDreamBooth, Step: 5, Total: 200, Metrics: map[string]float64{"loss": 0.5, "avg": 0.6}},
			Progress{Phase: "DreamBooth", Step: 5, Total: 200, Metrics: map[string]float64{"loss": 0.5}}},
		{demo.Progress{Stage: demo.StageSampling, Step: 2, Total: 20, Epoch: 3}, Progress{Phase: "DDPO epoch 3/8, sampling", Step: 2, Total: 20}},
		{demo.Progress{Stage: demo.StageTraining, Step: 7, Total: 10, Epoch: 3}, Progress{Phase: "DDPO epoch 3/8, training", Step: 7, Total: 10}},
		{demo.Progress{Stage: demo.StageTraining, Step: 1, Total: 1, Epoch: 3, Metrics: map[string]float64{"reward": 0.4}},
			Progress{Phase: "DDPO epochs", Step: 3, Total: 8, Metrics: map[string]float64{"reward": 0.4}}},
		{demo.Progress{Stage: demo.StageEvaluate, Step: 4, Total: 16}, Progress{Phase: "Evaluation", Step: 4, Total: 16}},
	} {
		got := demoProgress(c.in, 8)
		if got.Phase != c.want.Phase || got.Step != c.want.Step || got.Total != c.want.Total || fmt.Sprint(got.Metrics) != fmt.Sprint(c.want.Metrics) {
			t.Errorf("%+v: got %+v, want %+v", c.in, got, c.want)
		}
	}
}

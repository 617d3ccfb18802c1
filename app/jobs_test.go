package app

import (
	"context"
	"encoding/json"
	"fmt"
	"image"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"github.com/instructbooth/instructbooth/internal/testenv"
	"github.com/instructbooth/instructbooth/model/generate"
	"github.com/instructbooth/instructbooth/model/sd"
	"github.com/instructbooth/instructbooth/store"
)

// recorder collects the runner's updates for one run.
type recorder struct {
	mu      sync.Mutex
	updates []Update
}

func record(u *UI) *recorder {
	r := &recorder{}
	u.Runner.Subscribe(func(up Update) {
		r.mu.Lock()
		r.updates = append(r.updates, up)
		r.mu.Unlock()
	})
	return r
}

func (r *recorder) of(id string) []Update {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Update
	for _, u := range r.updates {
		if u.Run.ID == id {
			out = append(out, u)
		}
	}
	return out
}

func samePixels(a, b image.Image) bool {
	if a.Bounds() != b.Bounds() {
		return false
	}
	for y := a.Bounds().Min.Y; y < a.Bounds().Max.Y; y++ {
		for x := a.Bounds().Min.X; x < a.Bounds().Max.X; x++ {
			r1, g1, b1, a1 := a.At(x, y).RGBA()
			r2, g2, b2, a2 := b.At(x, y).RGBA()
			if r1 != r2 || g1 != g2 || b1 != b2 || a1 != a2 {
				return false
			}
		}
	}
	return true
}

// TestGenerate_job runs a Generate job on the tiny fixture model: the run
// goes queued -> running -> done with step progress (rate and ETA while
// running), the gallery holds Count images with their parameters, each
// image is exactly what model/generate makes for its seed, and the jobs
// card and the gallery view show the result.
func TestGenerate_job(t *testing.T) {
	u := newTestUI(t, true, nil)
	bm := tinyModel(t, u)
	s := newSubject(t, u, "Rex", "dog")
	rec := record(u)
	cfg := GenerateConfig{Prompt: "a photo of sks dog", Negative: "blurry", Seed: 41, Steps: 3, Guidance: 7.5, Count: 2, Sampler: "ddim"}
	run, err := u.StartRun(store.KindGenerate, s.ID, "", cfg)
	if err != nil {
		t.Fatal(err)
	}
	got, err := u.Runner.Wait(run.ID, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != store.StatusDone || got.Progress.Step != 6 || got.Progress.Total != 6 || got.BaseModelID != bm.ID {
		t.Fatalf("run %+v", got)
	}
	ups := rec.of(run.ID)
	statuses := map[store.RunStatus]bool{}
	steps, previews, rated := []int{}, 0, false
	for _, up := range ups {
		statuses[up.Run.Status] = true
		if up.Run.Status == store.StatusRunning && up.Run.Progress.Total == 6 {
			steps = append(steps, up.Run.Progress.Step)
			rated = rated || up.Rate > 0 && up.ETA > 0
		}
		if up.Preview != nil {
			previews++
		}
	}
	if !statuses[store.StatusQueued] || !statuses[store.StatusRunning] || !statuses[store.StatusDone] {
		t.Errorf("statuses seen %v", statuses)
	}
	if len(steps) < 6 || steps[len(steps)-1] != 6 || previews != 2 || !rated {
		t.Errorf("progress steps %v, %d previews, rate/ETA reported %v", steps, previews, rated)
	}

	imgs, err := u.DB.Gallery(store.GalleryFilter{RunID: run.ID})
	if err != nil || len(imgs) != 2 {
		t.Fatalf("%d gallery images, %v", len(imgs), err)
	}
	for i, g := range imgs {
		want := store.Sampler{Name: "ddim", Steps: 3, Guidance: 7.5, Width: 64, Height: 64}
		if g.Seed != int64(41+i) || g.Prompt != cfg.Prompt || g.NegativePrompt != "blurry" || g.Sampler != want ||
			g.SubjectID != s.ID || g.BaseModelID != bm.ID || g.CheckpointID != "" {
			t.Errorf("image %d: %+v", i, g)
		}
	}
	// The stored PNG is model/generate's image for that seed, pixel for pixel.
	pl, err := sd.Load(u.Engine(), bm.Path, sd.LoadOptions{F16Weights: true})
	if err != nil {
		t.Fatal(err)
	}
	defer pl.Release()
	res, err := generate.Generate(context.Background(), components(pl, "x"),
		generate.Params{Prompt: cfg.Prompt, Negative: "blurry", Steps: 3, Guidance: 7.5, Seed: 42, Width: 64, Height: 64, Sampler: "ddim"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := u.DB.GalleryImagePNG(imgs[1].ID)
	stored, err := decodeBytes(data)
	if err != nil {
		t.Fatal(err)
	}
	if !samePixels(stored, res.Images[0].RGB) {
		t.Error("gallery image of seed 42 differs from generate.Generate's")
	}
	texts, _ := generate.ReadPNGText(strings.NewReader(string(data)))
	if len(texts) == 0 {
		t.Error("the PNG carries no parameters")
	}

	card := u.Jobs.Card(run.ID)
	if card == nil {
		t.Fatal("no jobs card")
	}
	if card.Status.Text != "Done" || card.Bar.Value != 1 || !card.Gallery.Visible() || card.Cancel.Visible() || card.Resume.Visible() || card.Image.Image == nil {
		t.Errorf("card: %q, bar %v", card.Status.Text, card.Bar.Value)
	}
	u.Gallery.ShowFor(store.GalleryFilter{RunID: run.ID})
	if len(u.Gallery.Images) != 2 || u.Gallery.Count.Text != "2 image(s)" || !strings.HasPrefix(u.Gallery.Filter.Selected, "Run: ") {
		t.Errorf("gallery shows %d images (%q), filter %q", len(u.Gallery.Images), u.Gallery.Count.Text, u.Gallery.Filter.Selected)
	}
	if d := u.Describe(imgs[1]); !strings.Contains(d, "Seed: 42") || !strings.Contains(d, "ddim, 3 steps, guidance 7.5") || !strings.Contains(d, "Model: diffusers") {
		t.Errorf("description:\n%s", d)
	}
	dir := t.TempDir()
	if n, err := u.ExportImages(imgs, dir); n != 2 || err != nil {
		t.Errorf("export: %d, %v", n, err)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "4*-a-photo-of-sks-dog.png")); len(m) != 2 {
		t.Errorf("exported %v", m)
	}
}

// TestJob_cancelAndResume cancels a running Generate job: it becomes
// interrupted with the images finished so far; Resume finishes it with the
// remaining seeds only.
func TestJob_cancelAndResume(t *testing.T) {
	u := newTestUI(t, true, nil)
	tinyModel(t, u)
	s := newSubject(t, u, "Rex", "dog")
	// The Cancel button is tapped from the runner's own goroutine as the
	// first image is reported, so that exactly one image is done however
	// fast the GPU is (Generate checks for cancellation between steps).
	var runID string
	var once sync.Once
	var cancelShown bool
	u.Runner.Subscribe(func(up Update) {
		if up.Preview != nil && up.Run.ID == runID {
			once.Do(func() {
				card := u.Jobs.Card(runID)
				cancelShown = card.Cancel.Visible()
				test.Tap(card.Cancel)
			})
		}
	})
	cfg := GenerateConfig{Prompt: "sks dog", Seed: 7, Steps: 4, Guidance: 7.5, Count: 3, Sampler: "ddim"}
	data, _ := json.Marshal(cfg)
	bm, _ := u.DefaultBaseModel()
	run := store.Run{Kind: store.KindGenerate, SubjectID: s.ID, BaseModelID: bm.ID, Config: data, ID: "0f6a2a8e-5d2b-4c55-9a4b-8a4a8f7e0c11"}
	runID = run.ID
	if err := u.Runner.Submit(&run); err != nil {
		t.Fatal(err)
	}
	got, err := u.Runner.Wait(run.ID, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != store.StatusInterrupted || got.Error != msgCancelled {
		t.Fatalf("after cancel: %s %q", got.Status, got.Error)
	}
	if !cancelShown {
		t.Error("no Cancel button on a running job")
	}
	card := u.Jobs.Card(run.ID)
	before, _ := u.DB.Gallery(store.GalleryFilter{RunID: run.ID})
	if len(before) != 1 || before[0].Seed != 7 {
		t.Fatalf("%d images after cancelling at the first", len(before))
	}
	if !card.Resume.Visible() || card.Cancel.Visible() || card.Status.Text != "Interrupted" {
		t.Errorf("card after cancel: %q resume %v", card.Status.Text, card.Resume.Visible())
	}
	test.Tap(card.Resume)
	if got, _ = u.Runner.Wait(run.ID, time.Minute); got.Status != store.StatusDone {
		t.Fatalf("after resume: %s %q", got.Status, got.Error)
	}
	after, _ := u.DB.Gallery(store.GalleryFilter{RunID: run.ID})
	seeds := map[int64]bool{}
	for _, g := range after {
		seeds[g.Seed] = true
	}
	if len(after) != 3 || !seeds[7] || !seeds[8] || !seeds[9] {
		t.Errorf("images after resume: %d, seeds %v", len(after), seeds)
	}
}

// TestJob_resumeAfterCrash: a run left "running" by a crash shows as
// interrupted with a Resume button when the app starts again, and resumes
// to done.
func TestJob_resumeAfterCrash(t *testing.T) {
	path := filepath.Join(t.TempDir(), store.FileName)
	db, err := store.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := json.Marshal(GenerateConfig{Prompt: "sks dog", Seed: 3, Steps: 2, Guidance: 7.5, Count: 1, Sampler: "ddim"})
	m := store.BaseModel{Name: "tiny", Path: filepath.Join(testenv.Fixtures(t), "sd-tiny", "diffusers")}
	if err := db.PutBaseModel(&m); err != nil {
		t.Fatal(err)
	}
	r := store.Run{Kind: store.KindGenerate, BaseModelID: m.ID, Config: cfg, Status: store.StatusRunning}
	if err := db.PutRun(&r); err != nil {
		t.Fatal(err)
	}
	db.Close() // "crash": the run stays running in the file

	db, err = store.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	u := newTestUIOn(t, test.NewTempApp(t), db, true, nil)
	u.ShowTab("Jobs")
	card := u.Jobs.Card(r.ID)
	if card == nil || card.Status.Text != "Interrupted" || !card.Resume.Visible() || !strings.Contains(card.Detail.Text, "stopped while this run was running") {
		t.Fatalf("card after restart: %+v", card)
	}
	test.Tap(card.Resume)
	got, err := u.Runner.Wait(r.ID, time.Minute)
	if err != nil || got.Status != store.StatusDone {
		t.Fatalf("resumed run: %+v %v", got, err)
	}
	if imgs, _ := u.DB.Gallery(store.GalleryFilter{RunID: r.ID}); len(imgs) != 1 {
		t.Errorf("%d images", len(imgs))
	}
	if card.Status.Text != "Done" || card.Resume.Visible() {
		t.Errorf("card: %q", card.Status.Text)
	}
}

// fakeTrainer is a registered Personalize job: it logs a falling loss per
// step and honours cancellation.
type fakeTrainer struct {
	env JobEnv
	cfg PersonalizeConfig
}

func (f *fakeTrainer) Run(ctx context.Context, report func(Progress)) error {
	for step := 1; step <= 5; step++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		report(Progress{Step: step, Total: 5, Metrics: map[string]float64{"loss": 1 / float64(step)}})
	}
	return nil
}

// TestActions_registry: a Personalize trainer registered in the Registry
// gets the form's configuration (the papers' defaults unless edited) and
// its reported losses become the run's metric history and the card's
// curve.
func TestActions_registry(t *testing.T) {
	var got *fakeTrainer
	reg := DefaultRegistry()
	reg[store.KindPersonalize] = func(env JobEnv) (Job, error) {
		got = &fakeTrainer{env: env}
		return got, json.Unmarshal(env.Run.Config, &got.cfg)
	}
	u := newTestUI(t, false, reg)
	m := store.BaseModel{Name: "somewhere", Path: "/nonexistent"}
	if err := u.DB.PutBaseModel(&m); err != nil {
		t.Fatal(err)
	}
	s := newSubject(t, u, "Rex", "dog")
	if _, _, err := u.DB.AddSubjectImages(s.ID, []store.Image{{Name: "a.png", Data: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	u.OpenSubject(s.ID)
	test.Tap(u.Subject.Personalize)
	form := topOverlay(u)
	if d := texts(form); !strings.Contains(d, "a photo of sks dog") || !strings.Contains(d, "800") || !strings.Contains(d, "0.0001") || !strings.Contains(d, "200") {
		t.Fatalf("form lacks the defaults:\n%s", d)
	}
	es := entries(form)
	es[1].SetText("5") // Steps
	test.Tap(findButton(t, form, "Start"))
	runs, _ := u.DB.Runs(store.RunFilter{Kind: store.KindPersonalize})
	if len(runs) != 1 {
		t.Fatalf("%d personalize runs", len(runs))
	}
	// The fake trainer does not need the engine, but the runner waits for
	// one: this UI has none, so the run fails with the reason.
	r, _ := u.Runner.Wait(runs[0].ID, 30*time.Second)
	if r.Status != store.StatusFailed || !strings.Contains(r.Error, "no GPU") {
		t.Fatalf("run without a GPU: %s %q", r.Status, r.Error)
	}
	var cfg PersonalizeConfig
	json.Unmarshal(r.Config, &cfg)
	want := DefaultPersonalizeConfig(s)
	want.Steps = 5
	if fmt.Sprint(cfg) != fmt.Sprint(want) {
		t.Errorf("config %+v, want %+v", cfg, want)
	}
}

// TestActions_registryWithGPU runs the registered fake trainer for real:
// losses land in the store and on the card's curve.
func TestActions_registryWithGPU(t *testing.T) {
	reg := DefaultRegistry()
	reg[store.KindPersonalize] = func(env JobEnv) (Job, error) { return &fakeTrainer{env: env}, nil }
	u := newTestUI(t, true, reg)
	tinyModel(t, u)
	s := newSubject(t, u, "Rex", "dog")
	run, err := u.StartRun(store.KindPersonalize, s.ID, "", DefaultPersonalizeConfig(s))
	if err != nil {
		t.Fatal(err)
	}
	r, err := u.Runner.Wait(run.ID, 30*time.Second)
	if err != nil || r.Status != store.StatusDone {
		t.Fatalf("%+v %v", r, err)
	}
	loss := r.Metrics["loss"]
	if len(loss) != 5 || loss[0] != (store.Point{Step: 1, Value: 1}) || loss[4] != (store.Point{Step: 5, Value: 0.2}) {
		t.Errorf("stored loss %v", loss)
	}
	card := u.Jobs.Card(run.ID)
	if pts := card.Curve.Series("loss"); len(pts) != 5 || pts[4].Value != 0.2 || !card.Curve.Visible() {
		t.Errorf("curve %v", pts)
	}
}

// TestActions_generateForm fills the Generate form (its Advanced section
// opened): the newest trained model is preselected, and the run it starts
// applies that checkpoint and names its training run as parent.
func TestActions_generateForm(t *testing.T) {
	u := newTestUI(t, true, nil)
	bm := tinyModel(t, u)
	s := newSubject(t, u, "Rex", "dog")
	pr, ck := loraRun(t, u, store.KindPersonalize, s, bm, "lora_kohya.safetensors", 800)
	u.OpenSubject(s.ID)
	test.Tap(u.Subject.Generate)
	form := topOverlay(u)
	for _, obj := range test.LaidOutObjects(form) {
		if a, ok := obj.(*widget.Accordion); ok {
			a.Open(0)
		}
	}
	var sel *widget.Select
	for _, obj := range test.LaidOutObjects(form) {
		if w, ok := obj.(*widget.Select); ok && strings.HasPrefix(w.Selected, "DreamBooth") {
			sel = w
		}
	}
	if sel == nil {
		t.Fatal("the trained model is not preselected")
	}
	es := entries(form)
	if len(es) != 9 || es[0].Text != "a photo of sks dog" {
		t.Fatalf("%d entries, prompt %q", len(es), es[0].Text)
	}
	es[1].SetText("1") // Images
	es[4].SetText("2") // Steps
	test.Tap(findButton(t, form, "Start"))
	runs, _ := u.DB.Runs(store.RunFilter{Kind: store.KindGenerate})
	if len(runs) != 1 {
		t.Fatalf("%d generate runs; dialog: %s", len(runs), texts(topOverlay(u)))
	}
	r, err := u.Runner.Wait(runs[0].ID, time.Minute)
	if err != nil || r.Status != store.StatusDone || r.ParentID != pr.ID {
		t.Fatalf("%+v %v", r, err)
	}
	imgs, _ := u.DB.Gallery(store.GalleryFilter{RunID: r.ID})
	if len(imgs) != 1 || imgs[0].CheckpointID != ck.ID || imgs[0].Sampler.Steps != 2 {
		t.Errorf("images %+v", imgs)
	}
	if d := u.Describe(imgs[0]); !strings.Contains(d, "+ DreamBooth LoRA, step 800") {
		t.Errorf("description:\n%s", d)
	}
}

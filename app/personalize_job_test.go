package app

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/lora"
	"github.com/instructbooth/instructbooth/model/safetensors"
	"github.com/instructbooth/instructbooth/store"
)

// trainerRegistry is the registry cmd/instructbooth builds: Generate,
// Personalize, Align and Evaluate.
func trainerRegistry() Registry {
	reg := DefaultRegistry()
	reg[store.KindPersonalize] = NewPersonalizeJob
	reg[store.KindAlign] = NewAlignJob
	reg[store.KindEvaluate] = NewEvaluateJob
	return reg
}

// discPNG is a 64x64 PNG: a coloured disc on a contrasting background,
// off-centre so that flips differ.
func discPNG(t *testing.T, fg, bg color.RGBA, cx, cy, r float64) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 64, 64))
	for y := 0; y < 64; y++ {
		for x := 0; x < 64; x++ {
			c := bg
			if math.Hypot(float64(x)-cx, float64(y)-cy) < r {
				c = fg
			}
			img.SetRGBA(x, y, c)
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// photoSubject stores a subject "Rex" (sks dog) with three disc pictures
// and one file that is no image (broken.png).
func photoSubject(t *testing.T, u *UI) store.Subject {
	t.Helper()
	s := newSubject(t, u, "Rex", "dog")
	imgs := []store.Image{
		{Name: "a.png", Data: discPNG(t, color.RGBA{230, 40, 30, 255}, color.RGBA{20, 30, 200, 255}, 24, 30, 16)},
		{Name: "broken.png", Data: []byte("this is not an image")},
		{Name: "b.png", Data: discPNG(t, color.RGBA{240, 60, 40, 255}, color.RGBA{30, 50, 180, 255}, 36, 28, 14)},
		{Name: "c.png", Data: discPNG(t, color.RGBA{210, 30, 50, 255}, color.RGBA{10, 40, 220, 255}, 30, 40, 18)},
	}
	if _, _, err := u.DB.AddSubjectImages(s.ID, imgs); err != nil {
		t.Fatal(err)
	}
	s, _ = u.DB.Subject(s.ID)
	return s
}

// loraTensors parses a stored LoRA checkpoint: its tensors as raw bytes
// by name, and its metadata.
func loraTensors(t *testing.T, db *store.DB, id string) (map[string][]byte, lora.Meta) {
	t.Helper()
	b, err := db.CheckpointTensors(id)
	if err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Parse(bytes.NewReader(b), int64(len(b)), id)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, n := range f.Names() {
		raw, _, err := f.Raw(n)
		if err != nil {
			t.Fatal(err)
		}
		out[n] = append([]byte(nil), raw...)
	}
	return out, lora.ParseMeta(f.Metadata)
}

// tinyPersonalize is a personalize configuration for the tiny model: 3
// steps at its 64 px, a large learning rate so that the adapters move.
func tinyPersonalize(s store.Subject) PersonalizeConfig {
	c := DefaultPersonalizeConfig(s)
	c.Steps, c.LearningRate, c.Seed = 3, 5e-3, 11
	c.PriorPreservation, c.ClassImages = false, 0
	return c
}

// TestPersonalize_job trains 3 DreamBooth LoRA steps on the tiny model
// through the runner on a subject with one broken photo: the run finishes,
// the broken photo is named in the run's log, the loss of every step is
// in the run's metrics, a validation preview arrives, the LoRA is stored
// as kohya checkpoints (step 2, periodic, and step 3, final) with the
// subject's metadata, it loads against the model with trained (non-zero)
// Up weights, and the card offers Export and the log.
func TestPersonalize_job(t *testing.T) {
	u := newTestUI(t, true, trainerRegistry())
	bm := tinyModel(t, u)
	s := photoSubject(t, u)
	rec := record(u)
	cfg := tinyPersonalize(s)
	cfg.CheckpointEvery = 2
	cfg.ValidateEvery = 3
	run, err := u.StartRun(store.KindPersonalize, s.ID, "", cfg)
	if err != nil {
		t.Fatal(err)
	}
	r, err := u.Runner.Wait(run.ID, 2*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != store.StatusDone || r.Progress.Step != 3 || r.Progress.Total != 3 {
		t.Fatalf("run %s %q at %d/%d\nlog:\n%s", r.Status, r.Error, r.Progress.Step, r.Progress.Total, u.RunLog(run.ID))
	}
	log := u.RunLog(run.ID)
	if !strings.Contains(log, "photo skipped: broken.png: not an image") || !strings.Contains(log, "3 of 4 photos used at 64 px") {
		t.Errorf("log:\n%s", log)
	}
	loss := r.Metrics["loss"]
	if len(loss) != 3 {
		t.Fatalf("loss history %v", loss)
	}
	for i, p := range loss {
		if p.Step != i+1 || math.IsNaN(p.Value) || p.Value <= 0 || p.Value > 10 {
			t.Errorf("loss point %d: %+v", i, p)
		}
	}
	t.Logf("losses %v", loss)
	previews := 0
	for _, up := range rec.of(run.ID) {
		if up.Preview != nil {
			previews++
			if b := up.Preview.Bounds(); b.Dx() != 64 || b.Dy() != 64 {
				t.Errorf("preview %v", b)
			}
		}
	}
	if previews != 1 {
		t.Errorf("%d validation previews, want 1 (step 3)", previews)
	}
	if m, _ := filepath.Glob(filepath.Join(RunDir(u.DB, run.ID), "validation", "step-000003-0.png")); len(m) != 1 {
		t.Errorf("validation image not written")
	}

	cps, err := u.DB.Checkpoints(run.ID)
	if err != nil || len(cps) != 2 || cps[0].Step != 2 || cps[1].Step != 3 || cps[1].Kind != store.CheckpointLoRA {
		t.Fatalf("checkpoints %+v, %v", cps, err)
	}
	tensors, meta := loraTensors(t, u.DB, cps[1].ID)
	if meta.Identifier != "sks" || meta.ClassNoun != "dog" || meta.Steps != 3 || len(meta.BaseModelHash) != 64 {
		t.Errorf("metadata %+v", meta)
	}
	nUp := 0
	for name := range tensors {
		if strings.HasPrefix(name, "lora_unet_") && strings.HasSuffix(name, ".lora_up.weight") {
			nUp++
		}
	}
	if nUp == 0 {
		t.Fatalf("no kohya U-Net adapters in %d tensors", len(tensors))
	}
	if _, m2 := loraTensors(t, u.DB, cps[0].ID); m2.Steps != 2 {
		t.Errorf("periodic checkpoint metadata %+v", m2)
	}
	// The stored LoRA loads against the model (what Generate, Export and
	// Align do) and has learnt something: Up starts at zero.
	err = u.Runner.WithGPU(func(_ *gpu.Engine, m *Models) error {
		pl, _, err := m.Base(bm.ID)
		if err != nil {
			return err
		}
		l, err := LoadCheckpointLoRA(u.DB, cps[1].ID, pl)
		if err != nil {
			return err
		}
		defer l.Release()
		if len(l.UNet) != nUp {
			t.Errorf("%d adapters loaded, %d in the file", len(l.UNet), nUp)
		}
		moved := 0.0
		for _, a := range l.UNet {
			for _, v := range a.Up.MustRead() {
				moved = math.Max(moved, math.Abs(float64(v)))
			}
		}
		if moved == 0 {
			t.Error("every Up weight is still zero after 3 steps")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	u.Jobs.Refresh()
	card := u.Jobs.Card(run.ID)
	if card == nil || !card.Export.Visible() || !card.Log.Visible() || card.Resume.Visible() {
		t.Errorf("card: export %v, log %v", card != nil && card.Export.Visible(), card != nil && card.Log.Visible())
	}
	if choices := u.ModelChoices(s.ID); len(choices) != 2 || choices[1].CheckpointID != cps[1].ID {
		t.Errorf("model choices %+v", choices)
	}
}

// TestPersonalize_cancelResume cancels a run with prior preservation after
// its first step (from the runner's goroutine, as the step is reported):
// it is interrupted with the LoRA of step 1 stored; Resume continues from
// the trainer's checkpoint and ends with exactly the losses and LoRA
// tensors of an uninterrupted run of the same configuration.
func TestPersonalize_cancelResume(t *testing.T) {
	u := newTestUI(t, true, trainerRegistry())
	tinyModel(t, u)
	s := photoSubject(t, u)
	cfg := tinyPersonalize(s)
	cfg.PriorPreservation, cfg.ClassImages = true, 1
	cfg.ValidateEvery = -1

	rec := record(u)
	full, err := u.StartRun(store.KindPersonalize, s.ID, "", cfg)
	if err != nil {
		t.Fatal(err)
	}
	want, err := u.Runner.Wait(full.ID, 2*time.Minute)
	if err != nil || want.Status != store.StatusDone {
		t.Fatalf("uninterrupted run: %+v %v\n%s", want, err, u.RunLog(full.ID))
	}
	// Drawing the class image is reported as a phase of its own.
	var phases []string
	for _, up := range rec.of(full.ID) {
		if up.Run.Status == store.StatusRunning && up.Run.Progress.Total > 0 {
			phases = append(phases, fmt.Sprintf("%s %d/%d", up.Phase, up.Run.Progress.Step, up.Run.Progress.Total))
		}
	}
	if got := strings.Join(phases, ","); got != " 0/3,Class images 0/1,Class images 1/1, 1/3, 2/3, 3/3" {
		t.Errorf("progress %q", got)
	}

	var mu sync.Mutex
	var runID string
	var once sync.Once
	u.Runner.Subscribe(func(up Update) {
		mu.Lock()
		id := runID
		mu.Unlock()
		if up.Run.ID == id && up.Metrics != nil && up.Run.Progress.Step == 1 {
			once.Do(func() { u.Runner.Cancel(id) })
		}
	})
	data := mustJSON(t, cfg)
	bmID := want.BaseModelID
	run := store.Run{Kind: store.KindPersonalize, SubjectID: s.ID, BaseModelID: bmID, Config: data, ID: "5c1e7a44-3a6b-4a0e-8f3c-2f1d9b7e6a10"}
	mu.Lock()
	runID = run.ID
	mu.Unlock()
	if err := u.Runner.Submit(&run); err != nil {
		t.Fatal(err)
	}
	got, err := u.Runner.Wait(run.ID, 2*time.Minute)
	if err != nil || got.Status != store.StatusInterrupted || got.Error != msgCancelled {
		t.Fatalf("after cancel: %+v %v\n%s", got, err, u.RunLog(run.ID))
	}
	cps, _ := u.DB.Checkpoints(run.ID)
	if len(cps) != 1 || cps[0].Step != 1 {
		t.Fatalf("checkpoints after the interruption: %+v", cps)
	}
	if err := u.Runner.Resume(run.ID); err != nil {
		t.Fatal(err)
	}
	got, err = u.Runner.Wait(run.ID, 2*time.Minute)
	if err != nil || got.Status != store.StatusDone {
		t.Fatalf("after resume: %+v %v\n%s", got, err, u.RunLog(run.ID))
	}
	if log := u.RunLog(run.ID); !strings.Contains(log, "resumed from") || !strings.Contains(log, "ckpt-00000001.safetensors (step 1)") {
		t.Errorf("log:\n%s", log)
	}
	t.Logf("log of the resumed run:\n%s", u.RunLog(run.ID))
	if a, b := want.Metrics["loss"], got.Metrics["loss"]; len(a) != 3 || len(b) != 3 || a[0] != b[0] || a[1] != b[1] || a[2] != b[2] {
		t.Errorf("losses: uninterrupted %v, resumed %v", a, b)
	}
	wc, _ := u.DB.LatestCheckpoint(full.ID)
	gc, _ := u.DB.LatestCheckpoint(run.ID)
	if wc.Step != 3 || gc.Step != 3 {
		t.Fatalf("final checkpoints at steps %d and %d", wc.Step, gc.Step)
	}
	wt, _ := loraTensors(t, u.DB, wc.ID)
	gt, _ := loraTensors(t, u.DB, gc.ID)
	if len(wt) == 0 || len(wt) != len(gt) {
		t.Fatalf("%d tensors uninterrupted, %d resumed", len(wt), len(gt))
	}
	for name, w := range wt {
		if !bytes.Equal(w, gt[name]) {
			t.Errorf("tensor %s differs after resuming", name)
		}
	}
	// The class images were drawn once, into the shared cache.
	if m, _ := filepath.Glob(filepath.Join(ClassImageCache(u.DB), "*", "class-*.png")); len(m) != 1 {
		t.Errorf("class-image cache holds %v", m)
	}
	if _, err := os.Stat(filepath.Join(RunDir(u.DB, run.ID), "checkpoints")); err != nil {
		t.Errorf("no trainer checkpoints in the run's folder: %v", err)
	}
}

func mustJSON(t *testing.T, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestPersonalize_full: full fine-tuning beyond the memory budget fails
// with the trainer's explanation; within it (Retry with no budget) one
// step is trained and stored as a full single-file checkpoint under the
// store's checkpoint folder, with its hash and the subject's metadata.
func TestPersonalize_full(t *testing.T) {
	u := newTestUI(t, true, trainerRegistry())
	tinyModel(t, u)
	s := photoSubject(t, u)
	cfg := tinyPersonalize(s)
	cfg.Mode, cfg.Steps, cfg.LearningRate, cfg.ValidateEvery = ModeFull, 1, 2e-3, -1
	u.App.Preferences().SetFloat(PrefMemoryGiB, 1.0/(1<<20)) // 1 KiB
	run, err := u.StartRun(store.KindPersonalize, s.ID, "", cfg)
	if err != nil {
		t.Fatal(err)
	}
	r, err := u.Runner.Wait(run.ID, time.Minute)
	if err != nil || r.Status != store.StatusFailed || !strings.Contains(r.Error, "full fine-tuning at 64 px needs about") || !strings.Contains(r.Error, "use LoRA mode") {
		t.Fatalf("over budget: %s %q %v", r.Status, r.Error, err)
	}
	u.App.Preferences().SetFloat(PrefMemoryGiB, 0)
	if err := u.Runner.Resume(run.ID); err != nil {
		t.Fatal(err)
	}
	if r, err = u.Runner.Wait(run.ID, 2*time.Minute); err != nil || r.Status != store.StatusDone {
		t.Fatalf("within budget: %+v %v\n%s", r, err, u.RunLog(run.ID))
	}
	c, err := u.DB.LatestCheckpoint(run.ID)
	if err != nil || c.Kind != store.CheckpointFull || c.Step != 1 || filepath.Dir(c.Path) != u.DB.CheckpointDir() {
		t.Fatalf("checkpoint %+v %v", c, err)
	}
	if h, err := fileHash(c.Path); err != nil || h != c.Hash {
		t.Errorf("hash %s, file %s (%v)", c.Hash, h, err)
	}
	f, err := safetensors.Open(c.Path)
	if err != nil {
		t.Fatal(err)
	}
	meta := lora.ParseMeta(f.Metadata)
	unet := 0
	for _, n := range f.Names() {
		if strings.HasPrefix(n, "model.diffusion_model.") {
			unet++
		}
	}
	f.Close()
	if meta.Identifier != "sks" || meta.ClassNoun != "dog" || meta.Steps != 1 || unet == 0 {
		t.Errorf("metadata %+v, %d U-Net tensors", meta, unet)
	}
}

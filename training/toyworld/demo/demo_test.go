package demo

import (
	"context"
	"image"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/instructbooth/instructbooth/internal/testenv"
	"github.com/instructbooth/instructbooth/training/ddpo"
	"github.com/instructbooth/instructbooth/training/evaluate"
	"github.com/instructbooth/instructbooth/training/reward"
	"github.com/instructbooth/instructbooth/training/toyworld"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testenv.Close()
	os.Exit(code)
}

func render(t *testing.T, s toyworld.Scene) *image.NRGBA {
	t.Helper()
	img, err := toyworld.Render(s, toyworld.Grid)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// TestScores: through the registries, the toy reward and text metric give
// a scene's own caption a higher score than the caption with its
// background changed, for every one of 30 scenes; the subject metric
// scores the subject's own unseen photos above base-world stars; bad
// specs are refused.
func TestScores(t *testing.T) {
	r := reward.NewRegistry()
	Register(r)
	rw, err := r.New(RewardName)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.New(RewardName + ":x"); err == nil {
		t.Error("the toyworld reward accepted an argument")
	}
	srcs, subject, err := evaluate.ParseMetrics(AlignMetric+","+FidelityMetric, &evaluate.Env{})
	if err != nil || len(srcs) != 2 || !subject {
		t.Fatalf("ParseMetrics: %v, %d sources, subject %v", err, len(srcs), subject)
	}
	if _, _, err := evaluate.ParseMetrics(AlignMetric+":/tmp", &evaluate.Env{}); err == nil || !strings.Contains(err.Error(), "bare name") {
		t.Errorf("a path after a builtin metric: %v", err)
	}
	text, release, err := srcs[0].Open()
	if err != nil {
		t.Fatal(err)
	}
	defer release()

	var imgs []*image.NRGBA
	var own, changed []string
	for i := 0; len(imgs) < 30; i++ {
		s := toyworld.SampleScene(42, i)
		if s.Background == toyworld.Plain {
			continue
		}
		imgs = append(imgs, render(t, s))
		own = append(own, s.Caption())
		c := s
		c.Background = (s.Background % 4) + 1 // another non-plain background
		changed = append(changed, c.Caption())
	}
	ctx := context.Background()
	a, err := rw.Score(ctx, imgs, own)
	if err != nil {
		t.Fatal(err)
	}
	b, err := rw.Score(ctx, imgs, changed)
	if err != nil {
		t.Fatal(err)
	}
	asImages := make([]image.Image, len(imgs))
	for i := range imgs {
		asImages[i] = imgs[i]
	}
	m, err := text.(interface {
		Score(context.Context, []string, []image.Image) ([]float64, error)
	}).Score(ctx, own, asImages)
	if err != nil {
		t.Fatal(err)
	}
	for i := range a {
		if !(a[i] > b[i]) || a[i] != m[i] {
			t.Errorf("scene %d: own caption %q %.3f (metric %.3f), changed %q %.3f", i, own[i], a[i], m[i], changed[i], b[i])
		}
	}

	subj := toyworld.TheSubject()
	var refs, unseen, stars []image.Image
	for _, s := range subj.Photos(1, 4) {
		refs = append(refs, render(t, s))
	}
	for _, s := range subj.Photos(2, 6) {
		unseen = append(unseen, render(t, s))
	}
	for i := 0; len(stars) < 6; i++ {
		if s := toyworld.SampleScene(7, i); s.Class == toyworld.Star {
			stars = append(stars, render(t, s))
		}
	}
	fu, err := FidelityScorer{}.ScoreSubject(ctx, refs, unseen)
	if err != nil {
		t.Fatal(err)
	}
	fs, err := FidelityScorer{}.ScoreSubject(ctx, refs, stars)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range fu {
		for _, s := range fs {
			if !(u > s) {
				t.Fatalf("subject fidelity: unseen subject photos %.3f, base-world stars %.3f", fu, fs)
			}
		}
	}
	t.Logf("fidelity: subject %.3f, stars %.3f", fu, fs)
}

// tinyModel saves a randomly initialised toy model of the default
// structure with small widths.
func tinyModel(t *testing.T) string {
	t.Helper()
	e := testenv.Engine(t)
	m, err := toyworld.NewModel(e, toyworld.SmallConfig(), 3)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Release()
	dir := filepath.Join(t.TempDir(), "base")
	if err := m.Save(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestRun_quick runs the whole demo with a few steps of every stage on a
// small random model: every stage writes its outputs, the report holds
// the three models with both scores for every image, and a second run
// finds every stage done and reproduces the same scores.
func TestRun_quick(t *testing.T) {
	e := testenv.Engine(t)
	base := tinyModel(t)
	out := t.TempDir()
	o := QuickOptions(out, base)
	var lines []string
	o.Log = func(s string) { lines = append(lines, s) }
	res, err := Run(context.Background(), e, o)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range lines {
		t.Log(l)
	}
	for _, p := range []string{
		"subject/photo-1.png", "subject/photo-3.png",
		DirDreamBooth + "/unet/diffusion_pytorch_model.safetensors", DirDreamBooth + "/vae/config.json", DirDreamBooth + "/tokenizer/vocab.json",
		FileAlignLoRA,
		DirResults + "/" + evaluate.FileMarkdown, DirResults + "/" + evaluate.FileSummary, DirResults + "/" + evaluate.FileGrid,
	} {
		if _, err := os.Stat(filepath.Join(out, p)); err != nil {
			t.Errorf("missing output: %v", err)
		}
	}
	r := res.Report
	if strings.Join(r.Runs, ",") != "base,dreambooth,instructbooth" || len(r.Metrics) != 2 {
		t.Fatalf("report runs %v metrics %v", r.Runs, r.Metrics)
	}
	want := 3 * len(o.HeldOut) * o.EvalImages
	for _, m := range r.Metrics {
		if len(r.Scores[m]) != want {
			t.Fatalf("%s: %d scores, want %d", m, len(r.Scores[m]), want)
		}
		for _, v := range r.Scores[m] {
			if math.IsNaN(v) || v < -1 || v > 1 {
				t.Fatalf("%s: score %v", m, v)
			}
		}
	}
	if len(res.Rewards) != o.Epochs {
		t.Errorf("%d epoch rewards, want %d", len(res.Rewards), o.Epochs)
	}
	sum := Summary(r)
	t.Logf("\n%s", sum)
	if !strings.Contains(sum, "instructbooth − dreambooth") || !strings.Contains(sum, "(paired, same seeds)") {
		t.Errorf("summary without the paired differences:\n%s", sum)
	}

	lines = nil
	again, err := Run(context.Background(), e, o)
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(lines, "\n")
	if !strings.Contains(joined, "dreambooth: done before") || !strings.Contains(joined, "ddpo: done before") {
		t.Errorf("second run did not skip the finished stages:\n%s", joined)
	}
	for _, m := range r.Metrics {
		for i, v := range again.Report.Scores[m] {
			if v != r.Scores[m][i] {
				t.Fatalf("%s score %d: %v, then %v", m, i, r.Scores[m][i], v)
			}
		}
	}

	// The measurements run on the personalised model with the demo's settings.
	err = WithTrainer(context.Background(), e, o, func(tr *ddpo.Trainer) error {
		gn, err := tr.MeasureGradient(context.Background(), 2*o.Samples, nil)
		if err != nil {
			return err
		}
		if gn.Groups != 2*o.Samples/o.Batch || len(gn.PerStep) != int(float64(o.Steps)*o.EarlyFraction) || !(gn.Total.Noise > 0) {
			t.Errorf("gradient measurement %+v", gn)
		}
		s, err := tr.MeasureInitialNoise(context.Background(), 2*o.Samples, 0, nil)
		if err != nil {
			return err
		}
		if s.Pairs != o.Samples {
			t.Errorf("x_T measurement %+v", s)
		}
		// The reward probe draws fixed noise: the same policy scores the same.
		r1, err := tr.MeasureReward(context.Background(), o.Samples, nil)
		if err != nil {
			return err
		}
		r2, err := tr.MeasureReward(context.Background(), o.Samples, nil)
		if err != nil {
			return err
		}
		for i := range r1 {
			if r1[i] != r2[i] || len(r1) != o.Samples {
				t.Fatalf("reward probe: %v, then %v", r1, r2)
			}
		}
		// A trained policy: the LoRA's Up matrices (zero in a fresh trainer) are set.
		if err := tr.LoadPolicy(filepath.Join(out, DirWork, "ddpo", "ckpt-00000001.safetensors")); err != nil {
			return err
		}
		var up float64
		for _, p := range tr.Params() {
			if strings.HasSuffix(p.Name, "lora.up.weight") {
				v, err := p.Read()
				if err != nil {
					return err
				}
				for _, x := range v {
					up += math.Abs(float64(x))
				}
			}
		}
		if up == 0 {
			t.Error("LoadPolicy left the LoRA at zero")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestActivities checks the prompt sets: every held-out activity is a pair
// of contexts (an accessory or action, and a background) that no training
// activity combines, while both of its contexts are trained.
func TestActivities(t *testing.T) {
	train := map[string]bool{}
	for _, a := range TrainActivities {
		train[a] = true
	}
	for _, a := range HeldOutActivities {
		if train[a] {
			t.Errorf("held-out activity %q is trained", a)
		}
		p := toyworld.ParsePrompt("a star " + a)
		if p.Background == toyworld.AnyBackground || p.Accessory == toyworld.AnyAccessory && p.Action == toyworld.AnyAction {
			t.Errorf("held-out activity %q is not a context with a background: %+v", a, p)
		}
		bg, other := false, false
		for _, b := range TrainActivities {
			q := toyworld.ParsePrompt("a star " + b)
			named := q.Accessory != toyworld.AnyAccessory || q.Action != toyworld.AnyAction
			if q.Background == p.Background && !named {
				bg = true
			}
			if q.Background == toyworld.AnyBackground && q.Accessory == p.Accessory && q.Action == p.Action {
				other = true
			}
			if q == p {
				t.Errorf("training activity %q names what held-out %q names", b, a)
			}
		}
		if !bg || !other {
			t.Errorf("held-out %q: its contexts are not both trained alone (background %v, other %v)", a, bg, other)
		}
	}
}

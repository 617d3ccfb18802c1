package ddpo

import (
	"context"
	"errors"
	"image"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/instructbooth/instructbooth/training"
	"github.com/instructbooth/instructbooth/training/reward"
)

// quickConfig is a run small enough for lavapipe: 2 samples of 64x64 in
// one batch, 2 DDIM steps without guidance, one trained step per sample.
func quickConfig(dir string) Config {
	return Config{Prompts: []string{"a sks dog playing soccer", "a dog playing soccer"}, Epochs: 2, SamplesPerEpoch: 2, BatchSize: 2,
		Steps: 2, Guidance: 1, TimestepFraction: 0.5, Width: 64, Height: 64, LR: 1e-2, Seed: 21, WorkDir: dir}
}

func readParams(t *testing.T, tr *Trainer) map[string][]float32 {
	t.Helper()
	out := map[string][]float32{}
	for _, p := range tr.Params() {
		out[p.Name] = p.MustRead()
	}
	return out
}

func withoutTimes(h []EpochStats) []EpochStats {
	out := append([]EpochStats(nil), h...)
	for i := range out {
		out[i].Seconds = 0
	}
	return out
}

// TestResume_matchesUninterrupted: a run cancelled in its second epoch and
// resumed from its checkpoint by a new trainer ends with the LoRA, the
// optimizer and the statistics of a run that was never interrupted.
func TestResume_matchesUninterrupted(t *testing.T) {
	_, c := tiny(t)
	run := func(cfg Config, cancelAt int) (*Trainer, error) {
		tr, err := New(c, reward.Brightness{}, cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		err = tr.Run(ctx, func(p Progress) {
			if p.Epoch == cancelAt && p.Phase == PhaseSampling && p.Step > (cancelAt-1)*tr.unitsPerEpoch() {
				cancel() // after the first sampling step of that epoch
			}
		})
		return tr, err
	}
	a, err := run(quickConfig(t.TempDir()), 0)
	if err != nil {
		t.Fatal(err)
	}
	want, wantHist, wantSteps := readParams(t, a), withoutTimes(a.History()), a.Optimizer().Steps()
	a.Release()

	dir := t.TempDir()
	b, err := run(quickConfig(dir), 2)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled run returned %v", err)
	}
	if b.Epoch() != 1 {
		t.Fatalf("cancelled after %d epochs, want 1", b.Epoch())
	}
	if err := b.Run(context.Background(), nil); err == nil || !strings.Contains(err.Error(), "mid-epoch") {
		t.Fatalf("running a stopped trainer again gave %v", err)
	}
	b.Release()
	if _, step, _ := training.LatestCheckpoint(dir); step != 1 {
		t.Fatalf("checkpoint after the cancelled run: step %d, want 1", step)
	}
	if seed, ok, err := SavedSeed(dir); err != nil || !ok || seed != 21 {
		t.Fatalf("SavedSeed = %d, %v, %v", seed, ok, err)
	}
	// Other settings refuse the folder.
	bad := quickConfig(dir)
	bad.LR = 2e-2
	if tr, err := New(c, reward.Brightness{}, bad); err == nil || !strings.Contains(err.Error(), "LR") {
		if tr != nil {
			tr.Release()
		}
		t.Fatalf("resuming with another learning rate gave %v", err)
	}
	r, err := New(c, reward.Brightness{}, quickConfig(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Release()
	if r.Epoch() != 1 || r.ResumedFrom == "" {
		t.Fatalf("resumed at epoch %d from %q", r.Epoch(), r.ResumedFrom)
	}
	if err := r.Run(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	got := readParams(t, r)
	for name, w := range want {
		if !reflect.DeepEqual(got[name], w) {
			t.Fatalf("%s differs after resuming", name)
		}
	}
	if !reflect.DeepEqual(withoutTimes(r.History()), wantHist) || r.Optimizer().Steps() != wantSteps {
		t.Fatalf("history after resuming\n%+v\nwant\n%+v", withoutTimes(r.History()), wantHist)
	}
	if wantHist[1].GradNorm == 0 || wantHist[0].Rewards[0] == wantHist[1].Rewards[0] {
		t.Fatalf("the run did not train or sampled the same images twice: %+v", wantHist)
	}
}

// nanAfter scores brightness, then NaN from call number n on.
type nanAfter struct {
	calls, n int
}

func (s *nanAfter) Name() string { return "brightness" }
func (s *nanAfter) Score(ctx context.Context, ims []*image.NRGBA, p []string) ([]float64, error) {
	s.calls++
	r, err := reward.Brightness{}.Score(ctx, ims, p)
	if s.calls >= s.n {
		r[len(r)-1] = math.NaN()
	}
	return r, err
}

// TestNonFinite_stopsAndKeepsCheckpoint: a NaN reward, a poisoned LoRA
// weight and an exploding ratio each stop the run with a clear error in
// the second epoch, leaving the first epoch's checkpoint as the latest.
func TestNonFinite_stopsAndKeepsCheckpoint(t *testing.T) {
	_, c := tiny(t)
	for _, tc := range []struct {
		name   string
		scorer reward.Scorer
		poison bool
		cfg    func(*Config)
		check  func(error) bool
	}{
		{"nan reward", &nanAfter{n: 2}, false, nil, func(err error) bool {
			var nf *training.NotFiniteError
			return errors.As(err, &nf) && strings.Contains(err.Error(), "reward brightness") && nf.Step == 2
		}},
		{"poisoned lora", reward.Brightness{}, true, nil, func(err error) bool {
			var nf *training.NotFiniteError
			return errors.As(err, &nf) && strings.Contains(err.Error(), "log-probability") && nf.Step == 2
		}},
		{"exploding ratio", reward.Brightness{}, false, func(c *Config) {
			// Two updates per epoch: the second batch is scored after the
			// first update, so its ratios leave 1 (beyond the tiny bound).
			c.SamplesPerEpoch, c.BatchSize, c.AccumBatches, c.MaxLogRatio = 4, 2, 1, 1e-9
			c.Epochs = 1
		}, func(err error) bool { return errors.Is(err, ErrRatio) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := quickConfig(dir)
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			tr, err := New(c, tc.scorer, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Release()
			var good map[string][]float32
			err = tr.Run(context.Background(), func(p Progress) {
				if p.Phase == PhaseEpoch {
					good = readParams(t, tr)
				}
				if tc.poison && p.Epoch == 2 && p.Phase == PhaseSampling && good != nil {
					up := tr.Params()[1]
					v := up.MustRead()
					v[0] = float32(math.NaN())
					up.Write(v)
					good = nil
				}
			})
			if err == nil || !tc.check(err) {
				t.Fatalf("got error %v", err)
			}
			t.Logf("stopped with: %v", err)
			_, step, _ := training.LatestCheckpoint(dir)
			if want := cfg.Epochs - 1; step != want {
				t.Fatalf("latest checkpoint at epoch %d, want %d", step, want)
			}
			if step == 1 {
				// The kept checkpoint restores the first epoch's finite LoRA.
				r, err := New(c, reward.Brightness{}, func() Config { q := quickConfig(dir); q.Epochs = 2; return q }())
				if err != nil {
					t.Fatal(err)
				}
				defer r.Release()
				for name, v := range readParams(t, r) {
					for _, x := range v {
						if math.IsNaN(float64(x)) {
							t.Fatalf("%s has NaN in the kept checkpoint", name)
						}
					}
				}
			}
		})
	}
}

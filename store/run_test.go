package store

import (
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// Ensure PutRun fills defaults and rejects invalid runs.
func TestDB_PutRun_validation(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    Run
		want error
	}{
		{"defaults", Run{Kind: KindPersonalize}, nil},
		{"config object", Run{Kind: KindAlign, Config: json.RawMessage(`{"lr": 1e-4, "steps": 800}`)}, nil},
		{"explicit status", Run{Kind: KindGenerate, Status: StatusDone}, nil},
		{"no kind", Run{}, ErrInvalid},
		{"bad kind", Run{Kind: "train"}, ErrInvalid},
		{"bad status", Run{Kind: KindEvaluate, Status: "paused"}, ErrInvalid},
		{"config array", Run{Kind: KindAlign, Config: json.RawMessage(`[1, 2]`)}, ErrInvalid},
		{"config broken", Run{Kind: KindAlign, Config: json.RawMessage(`{"lr":`)}, ErrInvalid},
		{"negative step", Run{Kind: KindAlign, Progress: Progress{Step: -1}}, ErrInvalid},
		{"id not a uuid", Run{ID: "run-1", Kind: KindAlign}, ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := mustOpen(t)
			r := tc.r
			err := db.PutRun(&r)
			wantErr(t, err, tc.want)
			if err != nil {
				return
			}
			got, err := db.Run(r.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.Status == "" || got.Created.IsZero() || !json.Valid(got.Config) {
				t.Errorf("stored run %+v", got)
			}
			if tc.r.Status == "" && got.Status != StatusQueued {
				t.Errorf("default status %q, want queued", got.Status)
			}
		})
	}
}

// Ensure Runs selects by every filter field and sorts by creation time.
func TestDB_Runs_filter(t *testing.T) {
	db := mustOpen(t)
	t0 := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)
	put := func(i int, r Run) string {
		r.Created = t0.Add(time.Duration(i) * time.Minute)
		return mustRun(t, db, r).ID
	}
	p := put(2, Run{Kind: KindPersonalize, SubjectID: "s1", BaseModelID: "m1", Status: StatusDone})
	a := put(1, Run{Kind: KindAlign, SubjectID: "s1", BaseModelID: "m1", ParentID: p, Status: StatusRunning})
	g := put(0, Run{Kind: KindGenerate, SubjectID: "s2", BaseModelID: "m1", ParentID: a})
	if err := db.AppendMetric(a, "reward", 1, 0.5); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		f    RunFilter
		want []string
	}{
		{"all, by time", RunFilter{}, []string{g, a, p}},
		{"kind", RunFilter{Kind: KindAlign}, []string{a}},
		{"status", RunFilter{Status: StatusQueued}, []string{g}},
		{"subject", RunFilter{SubjectID: "s1"}, []string{a, p}},
		{"model", RunFilter{BaseModelID: "m1"}, []string{g, a, p}},
		{"parent", RunFilter{ParentID: p}, []string{a}},
		{"combined", RunFilter{SubjectID: "s1", Kind: KindGenerate}, nil},
		{"metrics", RunFilter{Kind: KindAlign, Metrics: true}, []string{a}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runs, err := db.Runs(tc.f)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, r := range runs {
				ids = append(ids, r.ID)
				if (r.Metrics != nil) != (tc.f.Metrics && r.ID == a) {
					t.Errorf("run %s: metrics loaded = %v with Metrics = %v", r.ID, r.Metrics != nil, tc.f.Metrics)
				}
			}
			if !slices.Equal(ids, tc.want) {
				t.Errorf("runs %q, want %q", ids, tc.want)
			}
		})
	}
}

// Ensure progress and status updates change only their fields and stamp
// the times.
func TestDB_SetRunStatus_progressAndTimes(t *testing.T) {
	db := mustOpen(t)
	r := mustRun(t, db, Run{Kind: KindPersonalize, Config: json.RawMessage(`{"steps":10}`)})
	if err := db.SetRunStatus(r.ID, StatusRunning, ""); err != nil {
		t.Fatal(err)
	}
	started, _ := db.Run(r.ID)
	if started.Progress.Started.IsZero() || started.Status != StatusRunning {
		t.Fatalf("after running: %+v", started)
	}
	if err := db.UpdateRunProgress(r.ID, 7, 10); err != nil {
		t.Fatal(err)
	}
	if err := db.SetRunStatus(r.ID, StatusFailed, "out of memory"); err != nil {
		t.Fatal(err)
	}
	got, _ := db.Run(r.ID)
	if got.Progress.Step != 7 || got.Progress.Total != 10 || got.Status != StatusFailed || got.Error != "out of memory" {
		t.Errorf("after updates: %+v", got)
	}
	if !got.Progress.Started.Equal(started.Progress.Started) || got.Progress.Updated.Before(got.Progress.Started) {
		t.Errorf("times: %+v", got.Progress)
	}
	if string(got.Config) != `{"steps":10}` {
		t.Errorf("config changed to %s", got.Config)
	}
	wantErr(t, db.SetRunStatus(r.ID, "paused", ""), ErrInvalid)
	wantErr(t, db.SetRunStatus("nope", StatusDone, ""), ErrNotFound)
	wantErr(t, db.UpdateRunProgress(r.ID, -1, 10), ErrInvalid)
	wantErr(t, db.UpdateRunProgress("nope", 1, 10), ErrNotFound)
}

// Ensure metric series come back in step order, a repeated step replaces
// its value, and NaN and infinities survive exactly.
func TestDB_AppendMetric_seriesOrder(t *testing.T) {
	db := mustOpen(t)
	r := mustRun(t, db, Run{Kind: KindAlign})
	steps := rand.New(rand.NewPCG(1, 2)).Perm(50)
	for _, s := range steps {
		if err := db.AppendMetric(r.ID, "loss", s, float64(s)/10); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.AppendMetric(r.ID, "loss", 3, 99); err != nil {
		t.Fatal(err)
	}
	special := map[string]float64{"nan": math.NaN(), "inf": math.Inf(1), "-inf": math.Inf(-1), "tiny": math.SmallestNonzeroFloat64}
	if err := db.AppendMetrics(r.ID, 1<<40, special); err != nil {
		t.Fatal(err)
	}
	loss, err := db.Metric(r.ID, "loss")
	if err != nil {
		t.Fatal(err)
	}
	if len(loss) != 50 {
		t.Fatalf("%d points, want 50", len(loss))
	}
	for i, p := range loss {
		want := float64(i) / 10
		if i == 3 {
			want = 99
		}
		if p.Step != i || p.Value != want {
			t.Errorf("point %d = %+v, want {%d %v}", i, p, i, want)
		}
	}
	got, _ := db.Run(r.ID)
	if len(got.Metrics) != 5 {
		t.Errorf("%d series, want 5", len(got.Metrics))
	}
	for name, v := range special {
		pts := got.Metrics[name]
		if len(pts) != 1 || pts[0].Step != 1<<40 || math.Float64bits(pts[0].Value) != math.Float64bits(v) {
			t.Errorf("series %s = %+v, want %v", name, pts, v)
		}
	}
	if pts, err := db.Metric(r.ID, "missing"); err != nil || pts != nil {
		t.Errorf("missing series: %v, %v", pts, err)
	}
	wantErr(t, db.AppendMetric("nope", "loss", 0, 1), ErrNotFound)
	wantErr(t, db.AppendMetric(r.ID, "loss", -1, 1), ErrInvalid)
	wantErr(t, db.AppendMetric(r.ID, "", 0, 1), ErrInvalid)
}

// Ensure Open turns running runs (left by a crash) into interrupted ones
// and leaves every other status alone.
func TestDB_MarkInterrupted_atOpen(t *testing.T) {
	db := mustOpen(t)
	ids := map[RunStatus]string{}
	for _, s := range []RunStatus{StatusQueued, StatusRunning, StatusInterrupted, StatusFailed, StatusDone} {
		ids[s] = mustRun(t, db, Run{Kind: KindPersonalize, Status: s}).ID
	}
	second := mustRun(t, db, Run{Kind: KindAlign, Status: StatusRunning}).ID
	db.Close()

	db = mustOpenPath(t, db.Path())
	want := map[string]RunStatus{second: StatusInterrupted}
	for s, id := range ids {
		want[id] = s
	}
	want[ids[StatusRunning]] = StatusInterrupted
	for id, status := range want {
		r, err := db.Run(id)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != status {
			t.Errorf("run %s: status %q, want %q", id, r.Status, status)
		}
		if status == StatusInterrupted && id != ids[StatusInterrupted] && r.Error == "" {
			t.Errorf("interrupted run %s has no message", id)
		}
	}
	if marked, err := db.MarkInterrupted(); err != nil || len(marked) != 0 {
		t.Errorf("second MarkInterrupted = %v, %v; want nothing", marked, err)
	}
}

// Ensure DeleteRun removes the run with its metrics, checkpoints and
// gallery images, and nothing of other runs.
func TestDB_DeleteRun_cascades(t *testing.T) {
	db := mustOpen(t)
	rng := rand.New(rand.NewPCG(3, 4))
	var runs [2]Run
	for i := range runs {
		runs[i] = mustRun(t, db, Run{Kind: KindAlign})
		if err := db.AppendMetric(runs[i].ID, "reward", 1, 1); err != nil {
			t.Fatal(err)
		}
		if err := db.PutCheckpoint(&Checkpoint{RunID: runs[i].ID, Kind: CheckpointLoRA, Step: 1}, randBytes(rng, 100)); err != nil {
			t.Fatal(err)
		}
		if err := db.AddGalleryImage(&GalleryImage{RunID: runs[i].ID, Prompt: "a dog"}, fakePNG(rng, 100)); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.DeleteRun(runs[0].ID); err != nil {
		t.Fatal(err)
	}
	for i, r := range runs {
		_, errRun := db.Run(r.ID)
		cps, _ := db.Checkpoints(r.ID)
		gal, _ := db.Gallery(GalleryFilter{RunID: r.ID})
		gone := i == 0
		if errors.Is(errRun, ErrNotFound) != gone || (len(cps) == 0) != gone || (len(gal) == 0) != gone {
			t.Errorf("run %d: err %v, %d checkpoints, %d images; deleted = %v", i, errRun, len(cps), len(gal), gone)
		}
	}
	wantErr(t, db.DeleteRun(runs[0].ID), ErrNotFound)
}

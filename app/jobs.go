package app

import (
	"context"
	"errors"
	"fmt"
	"image"
	"maps"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/store"
)

// Progress is what a Job reports while it works.
type Progress struct {
	Step, Total int
	// Metrics are values at Step ("loss", "reward", ...). The runner
	// appends them to the run's metric history and draws them as curves.
	Metrics map[string]float64
	// Preview is an image to show beside the progress bar (a sample of the
	// model so far, the image just generated); nil keeps the last one. The
	// job must not change it after reporting it (the UI draws it later).
	Preview image.Image
	// Phase names a preparatory phase whose Step and Total count its own
	// units (e.g. "Class images" before DreamBooth's training steps); ""
	// is the job's main work. Rate and ETA restart when it changes.
	Phase string
}

// Job is one piece of background GPU work: a personalization, an
// alignment, a batch of generations or an evaluation. Run works until it is
// done, fails or ctx is cancelled (then it returns ctx.Err(), or an error
// wrapping it, after saving what it can resume from). It calls report as it
// goes, from one goroutine at a time. The runner calls Run on its GPU
// goroutine and never runs two jobs at once, so a job owns the engine for
// its whole Run.
type Job interface {
	Run(ctx context.Context, report func(Progress)) error
}

// JobEnv is what a Factory builds a job from.
type JobEnv struct {
	Engine *gpu.Engine
	DB     *store.DB
	// Run is the run record: ID, Kind, SubjectID, BaseModelID, ParentID
	// and Config (the JSON the action form wrote, e.g. PersonalizeConfig).
	Run store.Run
	// Resumed is true when the run was interrupted (or failed) before and
	// is being continued; Checkpoint is then its latest checkpoint, or nil
	// when it saved none.
	Resumed    bool
	Checkpoint *store.Checkpoint
	// Models loads base models, shared between jobs. A job that attaches
	// adapters to a shared pipeline must detach them before it returns.
	Models *Models
	// MemoryBudget is the GPU memory the user lets InstructBooth use, in
	// bytes (0: no limit); a trainer chooses batch size and gradient
	// checkpointing by it.
	MemoryBudget uint64
}

// Factory builds the job of a run. It runs on the GPU goroutine, so it may
// load models; it should not start the work itself.
type Factory func(env JobEnv) (Job, error)

// Registry maps run kinds to the factories that build their jobs. A kind
// without a factory is "not available in this build yet" in the UI.
//
// Registration points: cmd/instructbooth starts from DefaultRegistry (which
// has Generate) and adds the trainers:
//
//	reg[store.KindPersonalize] = NewPersonalizeJob // training/dreambooth
//	reg[store.KindAlign] = ...                     // training/ddpo
//	reg[store.KindEvaluate] = NewEvaluateJob       // training/evaluate
//	reg[store.KindDemo] = NewDemoJob               // training/toyworld/demo
type Registry map[store.RunKind]Factory

// DefaultRegistry returns the jobs this package implements itself:
// Generate.
func DefaultRegistry() Registry {
	return Registry{store.KindGenerate: NewGenerateJob}
}

// ErrNotAvailable is returned for a run kind with no registered factory.
var ErrNotAvailable = errors.New("not available in this build yet")

// Update is what the runner tells its subscribers after every change of a
// run it works on.
type Update struct {
	Run     store.Run          // the record as stored now (status, error, progress)
	Rate    float64            // steps per second since the job (re)started; 0 unknown
	ETA     time.Duration      // estimated time left; 0 unknown
	Metrics map[string]float64 // values logged at Run.Progress.Step with this update; nil none
	Preview image.Image        // a new preview image; nil none
	Phase   string             // Progress.Phase of the report
}

// Messages stored in Run.Error.
const (
	msgCancelled = "cancelled; press Resume to continue"
	msgClosed    = "InstructBooth was closed while this run was running"
	msgNotRun    = "InstructBooth was closed before this run started"
)

// Runner runs jobs one at a time on its own goroutine, recording every run
// in the store: queued when submitted, running, then done, failed (with the
// error) or interrupted (cancelled or the app closed; resumable), with its
// progress and metric history. It never touches the UI: subscribers get
// Updates on the runner's goroutine and must hand them to Fyne with
// fyne.Do.
type Runner struct {
	db      *store.DB
	reg     Registry
	engine  func() (*gpu.Engine, error)
	budget  func() uint64
	modelMu sync.Mutex
	models  *Models

	gpuMu sync.Mutex // held by a running job or a WithGPU call

	mu     sync.Mutex
	queue  []*task
	tasks  map[string]*task // queued or running, by run id
	subs   map[int]func(Update)
	nsub   int
	closed bool
	wake   chan struct{}
	stop   chan struct{}
	wg     sync.WaitGroup

	// progressEvery is the least time between two progress writes to the
	// store (metrics are written at every report).
	progressEvery time.Duration
}

type task struct {
	run     store.Run
	resumed bool
	ctx     context.Context
	cancel  context.CancelFunc
	started bool
	done    chan struct{}
}

// NewRunner starts a runner. engine returns the GPU engine (it may block
// until the engine is open); budget returns the memory budget in bytes
// (nil: no limit). Runs left queued by an earlier session are marked
// interrupted, so that they show a Resume button.
func NewRunner(db *store.DB, reg Registry, engine func() (*gpu.Engine, error), budget func() uint64) *Runner {
	if budget == nil {
		budget = func() uint64 { return 0 }
	}
	r := &Runner{
		db: db, reg: reg, engine: engine, budget: budget,
		tasks: map[string]*task{}, subs: map[int]func(Update){},
		wake: make(chan struct{}, 1), stop: make(chan struct{}),
		progressEvery: time.Second,
	}
	if queued, err := db.Runs(store.RunFilter{Status: store.StatusQueued}); err == nil {
		for _, q := range queued {
			_ = db.SetRunStatus(q.ID, store.StatusInterrupted, msgNotRun)
		}
	}
	r.wg.Add(1)
	go r.loop()
	return r
}

// Available reports whether runs of kind k can be started in this build.
func (r *Runner) Available(k store.RunKind) bool { return r.reg[k] != nil }

// Subscribe registers fn for every Update; the returned function removes it.
func (r *Runner) Subscribe(fn func(Update)) (cancel func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	id := r.nsub
	r.nsub++
	r.subs[id] = fn
	return func() {
		r.mu.Lock()
		delete(r.subs, id)
		r.mu.Unlock()
	}
}

func (r *Runner) publish(u Update) {
	r.mu.Lock()
	subs := make([]func(Update), 0, len(r.subs))
	for _, k := range slices.Sorted(maps.Keys(r.subs)) {
		subs = append(subs, r.subs[k])
	}
	r.mu.Unlock()
	for _, fn := range subs {
		fn(u)
	}
}

// publishRun publishes the stored state of a run.
func (r *Runner) publishRun(id string) {
	if run, err := r.db.Run(id); err == nil {
		run.Metrics = nil
		r.publish(Update{Run: run})
	}
}

// Submit stores run as a new queued run (assigning its ID, written back
// into *run) and queues it. The kind must have a factory.
func (r *Runner) Submit(run *store.Run) error {
	if !r.Available(run.Kind) {
		return fmt.Errorf("%s: %w", kindTitle(run.Kind), ErrNotAvailable)
	}
	run.Status, run.Error, run.Progress = store.StatusQueued, "", store.Progress{}
	if err := r.db.PutRun(run); err != nil {
		return err
	}
	return r.enqueue(*run, false)
}

// Resume queues an interrupted or failed run again; its job continues from
// the run's latest checkpoint (or what it stored so far).
func (r *Runner) Resume(id string) error {
	run, err := r.db.Run(id)
	if err != nil {
		return err
	}
	if run.Status != store.StatusInterrupted && run.Status != store.StatusFailed {
		return fmt.Errorf("run is %s; only interrupted or failed runs resume", run.Status)
	}
	if !r.Available(run.Kind) {
		return fmt.Errorf("%s: %w", kindTitle(run.Kind), ErrNotAvailable)
	}
	if err := r.db.SetRunStatus(id, store.StatusQueued, ""); err != nil {
		return err
	}
	run.Status, run.Metrics = store.StatusQueued, nil
	return r.enqueue(run, true)
}

func (r *Runner) enqueue(run store.Run, resumed bool) error {
	ctx, cancel := context.WithCancel(context.Background())
	t := &task{run: run, resumed: resumed, ctx: ctx, cancel: cancel, done: make(chan struct{})}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		cancel()
		_ = r.db.SetRunStatus(run.ID, store.StatusInterrupted, msgNotRun)
		return errors.New("the job runner is closed")
	}
	if _, dup := r.tasks[run.ID]; dup {
		r.mu.Unlock()
		cancel()
		return fmt.Errorf("run %s is already queued", run.ID)
	}
	r.tasks[run.ID] = t
	r.queue = append(r.queue, t)
	r.mu.Unlock()
	r.publishRun(run.ID)
	select {
	case r.wake <- struct{}{}:
	default:
	}
	return nil
}

// Cancel stops a queued or running run; it becomes interrupted and can be
// resumed. It reports whether the run was queued or running.
func (r *Runner) Cancel(id string) bool {
	r.mu.Lock()
	t := r.tasks[id]
	if t == nil {
		r.mu.Unlock()
		return false
	}
	t.cancel()
	if !t.started {
		r.queue = slices.DeleteFunc(r.queue, func(q *task) bool { return q == t })
		delete(r.tasks, id)
		close(t.done)
		r.mu.Unlock()
		_ = r.db.SetRunStatus(id, store.StatusInterrupted, msgCancelled)
		r.publishRun(id)
		return true
	}
	r.mu.Unlock()
	return true
}

// Active reports whether the run is queued or running in this runner.
func (r *Runner) Active(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.tasks[id] != nil
}

// Wait blocks until the run is no longer queued or running here (or the
// timeout passes) and returns its stored record.
func (r *Runner) Wait(id string, timeout time.Duration) (store.Run, error) {
	r.mu.Lock()
	t := r.tasks[id]
	r.mu.Unlock()
	if t != nil {
		select {
		case <-t.done:
		case <-time.After(timeout):
			return store.Run{}, fmt.Errorf("run %s still %s after %v", id, t.run.Status, timeout)
		}
	}
	return r.db.Run(id)
}

// WithGPU runs fn with the engine and the model cache while no job runs
// (waiting for a running one to finish). Everything that touches the
// engine outside jobs (LoRA export, the self-check) goes through it.
func (r *Runner) WithGPU(fn func(e *gpu.Engine, m *Models) error) error {
	e, err := r.engine()
	if err != nil {
		return err
	}
	r.gpuMu.Lock()
	defer r.gpuMu.Unlock()
	return fn(e, r.modelsFor(e))
}

func (r *Runner) modelsFor(e *gpu.Engine) *Models {
	r.modelMu.Lock()
	defer r.modelMu.Unlock()
	if r.models == nil {
		r.models = NewModels(e, r.db)
	}
	return r.models
}

// Close cancels the running job and every queued one (they become
// interrupted), waits for the runner's goroutine and releases the loaded
// models. It does not close the engine or the database.
func (r *Runner) Close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	queued := r.queue
	r.queue = nil
	for _, t := range r.tasks {
		t.cancel()
	}
	for _, t := range queued {
		delete(r.tasks, t.run.ID)
		close(t.done)
	}
	r.mu.Unlock()
	for _, t := range queued {
		_ = r.db.SetRunStatus(t.run.ID, store.StatusInterrupted, msgNotRun)
	}
	close(r.stop)
	r.wg.Wait()
	r.modelMu.Lock()
	if r.models != nil {
		r.models.Release()
		r.models = nil
	}
	r.modelMu.Unlock()
}

func (r *Runner) loop() {
	defer r.wg.Done()
	for {
		r.mu.Lock()
		var t *task
		if len(r.queue) > 0 && !r.closed {
			t = r.queue[0]
			r.queue = r.queue[1:]
			t.started = true
		}
		r.mu.Unlock()
		if t == nil {
			select {
			case <-r.wake:
				continue
			case <-r.stop:
				return
			}
		}
		r.execute(t)
		r.mu.Lock()
		delete(r.tasks, t.run.ID)
		r.mu.Unlock()
		close(t.done)
	}
}

// execute runs one task to its final status.
func (r *Runner) execute(t *task) {
	id := t.run.ID
	status, msg := store.StatusDone, ""
	err := r.runTask(t)
	switch {
	case err == nil:
	case t.ctx.Err() != nil && errors.Is(err, context.Canceled) || t.ctx.Err() != nil && errors.Is(err, t.ctx.Err()):
		status, msg = store.StatusInterrupted, msgCancelled
		r.mu.Lock()
		if r.closed {
			msg = msgClosed
		}
		r.mu.Unlock()
	default:
		status, msg = store.StatusFailed, err.Error()
	}
	_ = r.db.SetRunStatus(id, status, msg) // a closed database cannot record it; the store's Open marks it interrupted next time
	r.publishRun(id)
}

// runTask builds the job and runs it with the GPU held; a panic in a job
// becomes an error.
func (r *Runner) runTask(t *task) (err error) {
	if t.ctx.Err() != nil {
		return t.ctx.Err()
	}
	e, err := r.engine()
	if err != nil {
		return fmt.Errorf("no GPU: %w", err)
	}
	r.gpuMu.Lock()
	defer r.gpuMu.Unlock()
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("internal error: %v\n%s", p, debug.Stack())
		}
	}()
	if err := r.db.SetRunStatus(t.run.ID, store.StatusRunning, ""); err != nil {
		return err
	}
	r.publishRun(t.run.ID)
	env := JobEnv{Engine: e, DB: r.db, Run: t.run, Resumed: t.resumed, Models: r.modelsFor(e), MemoryBudget: r.budget()}
	if t.resumed {
		if c, err := r.db.LatestCheckpoint(t.run.ID); err == nil {
			env.Checkpoint = &c
		}
	}
	job, err := r.reg[t.run.Kind](env)
	if err != nil {
		return err
	}
	run, err := r.db.Run(t.run.ID)
	if err != nil {
		return err
	}
	run.Metrics = nil
	rep := &reporter{r: r, run: run, start: time.Now(), firstStep: -1}
	err = job.Run(t.ctx, rep.report)
	rep.flush()
	env.Models.Trim(env.MemoryBudget)
	if err == nil && rep.writeError != nil {
		err = fmt.Errorf("recording progress: %w", rep.writeError)
	}
	return err
}

// reporter turns a job's Progress reports into store writes and Updates.
type reporter struct {
	r          *Runner
	run        store.Run // the record as it was set running; Progress kept current here
	start      time.Time
	firstStep  int
	phase      string
	lastWrite  time.Time
	step, tot  int
	dirty      bool
	writeError error
}

func (p *reporter) report(pr Progress) {
	if p.firstStep < 0 || pr.Phase != p.phase {
		p.firstStep, p.phase = pr.Step, pr.Phase
		p.start = time.Now()
	}
	p.step, p.tot, p.dirty = pr.Step, pr.Total, true
	if len(pr.Metrics) > 0 {
		if err := p.r.db.AppendMetrics(p.run.ID, pr.Step, pr.Metrics); err != nil && p.writeError == nil {
			p.writeError = err
		}
	}
	if time.Since(p.lastWrite) >= p.r.progressEvery || pr.Step >= pr.Total {
		p.flush()
	}
	p.run.Progress.Step, p.run.Progress.Total = pr.Step, pr.Total
	u := Update{Run: p.run, Metrics: maps.Clone(pr.Metrics), Preview: pr.Preview, Phase: pr.Phase}
	if el := time.Since(p.start).Seconds(); el > 0 && pr.Step > p.firstStep {
		u.Rate = float64(pr.Step-p.firstStep) / el
		if pr.Total > pr.Step {
			u.ETA = time.Duration(float64(pr.Total-pr.Step) / u.Rate * float64(time.Second))
		}
	}
	p.r.publish(u)
}

func (p *reporter) flush() {
	if !p.dirty {
		return
	}
	p.dirty = false
	p.lastWrite = time.Now()
	if err := p.r.db.UpdateRunProgress(p.run.ID, p.step, p.tot); err != nil && p.writeError == nil {
		p.writeError = err
	}
}

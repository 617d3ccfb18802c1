package app

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/instructbooth/instructbooth/store"
)

// JobsView lists every run, newest first, each as a RunCard.
type JobsView struct {
	u     *UI
	root  fyne.CanvasObject
	list  *fyne.Container
	cards map[string]*RunCard
	Empty *widget.Label
}

func newJobsView(u *UI) *JobsView {
	v := &JobsView{u: u, cards: map[string]*RunCard{}}
	v.list = container.NewVBox()
	v.Empty = widget.NewLabel("No runs yet. Open a subject in the Library and press Personalize or Generate.")
	v.Empty.Wrapping = fyne.TextWrapWord
	title := widget.NewLabelWithStyle("Jobs", fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	note := widget.NewLabel("Jobs run one at a time on the GPU, in the background; the window stays usable. " +
		"A cancelled run, or one InstructBooth was closed during, can be resumed.")
	note.Wrapping = fyne.TextWrapWord
	v.root = container.NewBorder(container.NewVBox(title, note), nil, nil, nil, container.NewVScroll(container.NewVBox(v.Empty, v.list)))
	return v
}

// Refresh rebuilds the list from the store.
func (v *JobsView) Refresh() {
	runs, err := v.u.DB.Runs(store.RunFilter{Metrics: true})
	if err != nil {
		v.u.showError(err)
		return
	}
	slices.Reverse(runs)
	old := v.cards
	v.cards = map[string]*RunCard{}
	v.list.Objects = nil
	for _, r := range runs {
		c := old[r.ID]
		if c == nil {
			c = newRunCard(v.u, r)
		} else {
			c.setRun(r)
		}
		v.cards[r.ID] = c
		v.list.Add(c.root)
	}
	if len(runs) == 0 {
		v.Empty.Show()
	} else {
		v.Empty.Hide()
	}
	v.list.Refresh()
}

// Card returns the card of a run, or nil.
func (v *JobsView) Card(id string) *RunCard { return v.cards[id] }

func (v *JobsView) update(up Update) {
	if c := v.cards[up.Run.ID]; c != nil {
		c.update(up)
		return
	}
	v.Refresh()
}

// RunCard shows one run: what it is, its status, a progress bar with step,
// rate and ETA, its metric curve, the latest preview, and the buttons that
// apply (Cancel, Resume, Gallery, Export LoRA, Delete).
type RunCard struct {
	u      *UI
	root   *widget.Card
	run    store.Run
	Status *widget.Label
	Detail *widget.Label
	Bar    *widget.ProgressBar
	Curve  *Curve
	Image  *canvas.Image

	Cancel, Resume, Gallery, Export, Delete *widget.Button
	Results, Log                            *widget.Button // evaluation results; the run's log file

	phase string // Progress.Phase of the latest update
}

func newRunCard(u *UI, r store.Run) *RunCard {
	c := &RunCard{u: u}
	c.Status = widget.NewLabelWithStyle("", fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	c.Detail = widget.NewLabel("")
	c.Detail.Wrapping = fyne.TextWrapWord
	c.Bar = widget.NewProgressBar()
	c.Curve = NewCurve()
	c.Image = newThumb(120)
	c.Cancel = widget.NewButtonWithIcon("Cancel", theme.CancelIcon(), func() { u.Runner.Cancel(c.run.ID) })
	c.Resume = widget.NewButtonWithIcon("Resume", theme.MediaReplayIcon(), func() {
		if err := u.Runner.Resume(c.run.ID); err != nil {
			u.showError(err)
		}
	})
	c.Resume.Importance = widget.HighImportance
	c.Gallery = widget.NewButtonWithIcon("Images", theme.GridIcon(), func() { u.Gallery.ShowFor(store.GalleryFilter{RunID: c.run.ID}) })
	c.Export = widget.NewButtonWithIcon("Export LoRA…", theme.DownloadIcon(), func() { u.ShowExportLoRA(c.run.ID) })
	c.Results = widget.NewButtonWithIcon("Results", theme.InfoIcon(), func() { u.ShowResults(c.run.ID) })
	c.Log = widget.NewButtonWithIcon("Log", theme.DocumentIcon(), func() { u.ShowRunLog(c.run.ID) })
	c.Log.Importance = widget.LowImportance
	c.Delete = widget.NewButtonWithIcon("", theme.DeleteIcon(), c.confirmDelete)
	c.Delete.Importance = widget.LowImportance
	buttons := container.NewHBox(c.Cancel, c.Resume, c.Gallery, c.Results, c.Export, c.Log, c.Delete)
	body := container.NewBorder(nil, nil, nil, c.Image, container.NewVBox(c.Status, c.Bar, c.Detail, c.Curve, buttons))
	c.root = widget.NewCard("", "", body)
	c.setRun(r)
	return c
}

// Run is the record the card shows.
func (c *RunCard) Run() store.Run { return c.run }

// setRun shows a run as stored (metrics included when loaded).
func (c *RunCard) setRun(r store.Run) {
	metrics := r.Metrics
	c.run = r
	c.run.Metrics = nil
	if metrics != nil {
		c.Curve.Set(metrics)
	}
	c.root.SetTitle(runTitle(c.u, r))
	c.root.SetSubTitle(runSubtitle(r))
	c.show(0, 0)
	if r.Kind == store.KindGenerate && c.Image.Image == nil {
		if imgs, err := c.u.DB.Gallery(store.GalleryFilter{RunID: r.ID}); err == nil && len(imgs) > 0 {
			last := imgs[len(imgs)-1]
			if data, err := c.u.DB.GalleryImagePNG(last.ID); err == nil {
				if img, err := decodeBytes(data); err == nil {
					c.Image.Image = img
					c.Image.Refresh()
				}
			}
		}
	}
}

// update applies a runner update.
func (c *RunCard) update(up Update) {
	c.run, c.phase = up.Run, up.Phase
	c.Curve.Add(up.Run.Progress.Step, up.Metrics)
	if up.Preview != nil {
		c.Image.Image = up.Preview
		c.Image.Refresh()
	}
	c.show(up.Rate, up.ETA)
}

// show brings the labels, bar and buttons in line with c.run.
func (c *RunCard) show(rate float64, eta time.Duration) {
	r := c.run
	pr := r.Progress
	c.Status.SetText(statusTitle(r.Status))
	if pr.Total > 0 {
		c.Bar.SetValue(float64(pr.Step) / float64(pr.Total))
	} else {
		c.Bar.SetValue(0)
	}
	var detail string
	switch r.Status {
	case store.StatusQueued:
		detail = "Waiting for the GPU…"
	case store.StatusRunning:
		if pr.Total == 0 {
			detail = "Loading the model…"
		} else {
			detail = progressText(pr.Step, pr.Total, rate, eta)
			if c.phase != "" {
				detail = c.phase + ": " + detail
			}
		}
	case store.StatusDone:
		detail = fmt.Sprintf("Finished %d steps", pr.Total)
		if r.Kind == store.KindDemo {
			detail = "Finished"
		}
		if !pr.Started.IsZero() && pr.Updated.After(pr.Started) {
			detail += " in " + fmtDuration(pr.Updated.Sub(pr.Started))
		}
	default:
		detail = r.Error
		if pr.Total > 0 {
			detail += fmt.Sprintf(" (at step %d/%d)", pr.Step, pr.Total)
		}
	}
	c.Detail.SetText(detail)
	active := r.Status == store.StatusQueued || r.Status == store.StatusRunning
	showIf(c.Cancel, active)
	showIf(c.Resume, r.Status == store.StatusInterrupted || r.Status == store.StatusFailed)
	if r.Status == store.StatusFailed {
		c.Resume.SetText("Retry")
	} else {
		c.Resume.SetText("Resume")
	}
	showIf(c.Gallery, r.Kind == store.KindGenerate || r.Kind == store.KindEvaluate || r.Kind == store.KindDemo && r.Status == store.StatusDone)
	showIf(c.Results, (r.Kind == store.KindEvaluate || r.Kind == store.KindDemo) && r.Status == store.StatusDone)
	hasLog := false
	if (!active || r.Kind == store.KindDemo) && r.Kind != store.KindGenerate { // a demo's log follows its stages as it runs
		_, err := os.Stat(filepath.Join(RunDir(c.u.DB, r.ID), RunLogFile))
		hasLog = err == nil
	}
	showIf(c.Log, hasLog)
	hasCkpt := false
	if r.Kind == store.KindPersonalize || r.Kind == store.KindAlign {
		cps, _ := c.u.DB.Checkpoints(r.ID)
		hasCkpt = len(cps) > 0
	}
	showIf(c.Export, hasCkpt)
	showIf(c.Delete, !active)
	if c.Curve.Empty() {
		c.Curve.Hide()
	} else {
		c.Curve.Show()
	}
}

func showIf(o fyne.CanvasObject, visible bool) {
	if visible {
		o.Show()
	} else {
		o.Hide()
	}
}

// runTitle is "Generate · Rex" (the subject's name when it still exists).
func runTitle(u *UI, r store.Run) string {
	t := kindTitle(r.Kind)
	if r.SubjectID != "" {
		if s, err := u.DB.Subject(r.SubjectID); err == nil {
			t += " · " + s.Name
		}
	}
	return t
}

// runSubtitle says what the run does in one line (its prompt, its steps).
func runSubtitle(r store.Run) string {
	when := r.Created.Local().Format("Jan 2 15:04")
	switch r.Kind {
	case store.KindGenerate:
		var cfg GenerateConfig
		if json.Unmarshal(r.Config, &cfg) == nil {
			model := "base model"
			if cfg.CheckpointID != "" {
				model = "personalized model"
			}
			return fmt.Sprintf("%s · %d image(s) of “%s” · %s, seed %d", when, cfg.Count, cfg.Prompt, model, cfg.Seed)
		}
	case store.KindPersonalize:
		var cfg PersonalizeConfig
		if json.Unmarshal(r.Config, &cfg) == nil {
			what := fmt.Sprintf("LoRA rank %d", cfg.Rank)
			if cfg.Mode == ModeFull {
				what = "full fine-tune"
			}
			return fmt.Sprintf("%s · “%s” · %s, %d steps, lr %g", when, cfg.InstancePrompt, what, cfg.Steps, cfg.LearningRate)
		}
	case store.KindEvaluate:
		var cfg EvaluateConfig
		if json.Unmarshal(r.Config, &cfg) == nil {
			var names []string
			for _, m := range cfg.Metrics {
				n, _, _ := strings.Cut(m, ":")
				names = append(names, canonicalMetric(n))
			}
			return fmt.Sprintf("%s · %d prompt(s) × %d image(s) · %s", when, len(cfg.Prompts), cfg.ImagesPerPrompt, strings.Join(names, ", "))
		}
	case store.KindAlign:
		var cfg AlignConfig
		if json.Unmarshal(r.Config, &cfg) == nil {
			return fmt.Sprintf("%s · %d epochs × %d samples, reward %s", when, cfg.Epochs, cfg.SamplesPerEpoch, cfg.Reward)
		}
	case store.KindDemo:
		return when + " · DreamBooth, DDPO with the toy reward, and an evaluation of the base, DreamBooth and InstructBooth models"
	}
	return when
}

func (c *RunCard) confirmDelete() {
	if c.u.Runner.Active(c.run.ID) {
		c.u.showError(fmt.Errorf("cancel the run before deleting it"))
		return
	}
	dialog.ShowConfirm("Delete run", "Delete this run with its checkpoints and images?", func(ok bool) {
		if !ok {
			return
		}
		if err := c.u.DB.DeleteRun(c.run.ID); err != nil {
			c.u.showError(err)
			return
		}
		os.RemoveAll(RunDir(c.u.DB, c.run.ID)) // checkpoints, logs, reports
		c.u.Jobs.Refresh()
		c.u.Subject.refreshRuns()
		c.u.Gallery.Refresh()
	}, c.u.Win)
}

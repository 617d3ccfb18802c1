// Package app is InstructBooth's desktop UI (Fyne). It builds windows on a
// fyne.App handed to it, so the same code runs in the real binary
// (cmd/instructbooth) and under Fyne's headless test driver. Nothing
// imports app.
//
// The main window has five tabs: the subject Library (thumbnails, search,
// and each subject's page with its images, prompt words and actions),
// Jobs (every run with progress, rate, ETA, a live metric curve, previews,
// cancel and resume), Gallery (generated images with their parameters,
// per subject and per run), Compare (base, DreamBooth-only and aligned
// models on one prompt and seed, with a rating) and Settings (base models,
// GPU adapter and self-check, memory budget, data directory).
//
// Threading: all GPU work runs on the Runner's goroutine (jobs.go); the
// UI goroutine only builds widgets, and background goroutines change
// widgets through fyne.Do.
package app

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/icons"
	"github.com/instructbooth/instructbooth/store"
)

// Opener opens the GPU engine with the user's adapter choice ("" means
// automatic).
type Opener func(adapter string) (*gpu.Engine, error)

// Options configure New.
type Options struct {
	// DB is the open database (required). The UI does not close it.
	DB *store.DB
	// Open opens the GPU engine; it is called once, in the background.
	Open Opener
	// Registry builds the jobs of each run kind; nil means
	// DefaultRegistry() (Generate only).
	Registry Registry
	// DataDir is the folder of the database in use, shown in Settings.
	DataDir string
	// KeepEngine leaves the engine open at Close (tests share one engine).
	KeepEngine bool
	// ToyDemo, when set, opens the built-in toy world demo; Settings and
	// the "no base model" messages then offer a button for it. When nil
	// and a toy model is available (ToyModel), it adds the toy world to
	// the library and opens its subject (OpenToyWorld).
	ToyDemo func()
	// ToyModel returns the folder of the toy world's base model (the "try
	// it" subject's model); nil means the model built into this binary
	// (BuiltinToyModel), when the build has one.
	ToyModel func() (string, error)
}

// Preference keys (fyne.App.Preferences).
const (
	PrefBaseModel = "baseModel"       // id of the default base model
	PrefAdapter   = "adapter"         // gpu.Options.Adapter; "" automatic
	PrefMemoryGiB = "memoryBudgetGiB" // float, 0 no limit
	PrefDataDir   = "dataDir"         // database folder for the next start
)

// UI is the main window and its state. Exported fields are for tests; the
// UI changes widgets only on Fyne's goroutine (fyne.Do).
type UI struct {
	App    fyne.App
	Win    fyne.Window
	DB     *store.DB
	Runner *Runner
	Tabs   *container.AppTabs

	// GPU card (Settings).
	Adapter  *widget.Label
	Status   *widget.Label
	Progress *widget.ProgressBar
	Check    *widget.Button
	Log      *widget.Label

	Library  *LibraryView
	Subject  *SubjectPage
	Jobs     *JobsView
	Gallery  *GalleryView
	Compare  *CompareView
	Settings *SettingsView

	opts      Options
	libStack  *fyne.Container // the Library tab: library or subject page
	statusBar *widget.Label

	engReady chan struct{}
	mu       sync.Mutex
	eng      *gpu.Engine
	engErr   error
	done     chan struct{} // closed when a self-check finishes (tests wait on it)
	unsub    func()
	closing  bool

	lastUpdate map[string]Update // latest update per running run (Fyne goroutine)
}

// New builds the main window on a. The engine is opened in the background;
// the window is usable at once. Runs the database holds as interrupted (the
// store marks runs found running at Open) show a Resume button in Jobs.
func New(a fyne.App, opts Options) *UI {
	if opts.Registry == nil {
		opts.Registry = DefaultRegistry()
	}
	if opts.ToyModel == nil {
		opts.ToyModel = defaultToyModel()
	}
	u := &UI{App: a, DB: opts.DB, opts: opts, engReady: make(chan struct{}), lastUpdate: map[string]Update{}}
	if u.opts.ToyDemo == nil && u.opts.ToyModel != nil {
		u.opts.ToyDemo = u.OpenToyWorld
	}
	u.refreshToyModel()
	u.Win = a.NewWindow("InstructBooth")
	u.Win.SetIcon(fyne.NewStaticResource("icon.png", icons.AppPNG))
	u.Runner = NewRunner(opts.DB, opts.Registry, u.engine, u.memoryBudget)

	u.Adapter = widget.NewLabel("GPU: opening…")
	u.Adapter.Wrapping = fyne.TextWrapWord
	u.Status = widget.NewLabel("")
	u.Progress = widget.NewProgressBar()
	u.Log = widget.NewLabel("")
	u.Log.TextStyle = fyne.TextStyle{Monospace: true}
	u.Check = widget.NewButtonWithIcon("Run GPU self-check", theme.MediaPlayIcon(), u.runCheck)
	u.Check.Disable()
	u.statusBar = widget.NewLabel("")

	u.Library = newLibraryView(u)
	u.Subject = newSubjectPage(u)
	u.Jobs = newJobsView(u)
	u.Gallery = newGalleryView(u)
	u.Compare = newCompareView(u)
	u.Settings = newSettingsView(u)
	u.libStack = container.NewStack(u.Library.root)

	u.Tabs = container.NewAppTabs(
		container.NewTabItemWithIcon("Library", theme.HomeIcon(), u.libStack),
		container.NewTabItemWithIcon("Jobs", theme.MediaPlayIcon(), u.Jobs.root),
		container.NewTabItemWithIcon("Gallery", theme.FileImageIcon(), u.Gallery.root),
		container.NewTabItemWithIcon("Compare", theme.ViewRestoreIcon(), u.Compare.root),
		container.NewTabItemWithIcon("Settings", theme.SettingsIcon(), u.Settings.root),
	)
	u.Tabs.SetTabLocation(container.TabLocationLeading)
	u.Tabs.OnSelected = func(t *container.TabItem) { u.refreshTab(t.Text) }
	u.Win.SetContent(container.NewBorder(nil, u.statusBar, nil, nil, u.Tabs))
	u.Win.Resize(fyne.NewSize(1100, 720))
	u.Win.SetOnDropped(func(_ fyne.Position, uris []fyne.URI) { u.Drop(uris) })
	u.Win.SetCloseIntercept(u.confirmClose)
	u.unsub = u.Runner.Subscribe(func(up Update) { fyne.Do(func() { u.onUpdate(up) }) })
	u.Library.Refresh()
	u.Jobs.Refresh()
	u.updateStatusBar()
	go u.openEngine()
	return u
}

// ShowTab selects a tab by its title ("Library", "Jobs", "Gallery",
// "Compare", "Settings").
func (u *UI) ShowTab(title string) {
	for _, t := range u.Tabs.Items {
		if t.Text == title {
			u.Tabs.Select(t)
			return
		}
	}
}

func (u *UI) refreshTab(title string) {
	switch title {
	case "Library":
		u.Library.Refresh()
	case "Jobs":
		u.Jobs.Refresh()
	case "Gallery":
		u.Gallery.Refresh()
	case "Compare":
		u.Compare.Refresh()
	case "Settings":
		u.Settings.Refresh()
	}
}

// onUpdate dispatches a runner update to every view (Fyne goroutine).
func (u *UI) onUpdate(up Update) {
	if up.Run.Status == store.StatusRunning {
		u.lastUpdate[up.Run.ID] = up
	} else {
		delete(u.lastUpdate, up.Run.ID)
	}
	u.Jobs.update(up)
	u.Subject.update(up)
	u.Compare.update(up)
	if up.Run.Status != store.StatusRunning && up.Run.Status != store.StatusQueued || up.Preview != nil {
		u.Gallery.Refresh()
	}
	u.updateStatusBar()
}

func (u *UI) updateStatusBar() {
	runs, _ := u.DB.Runs(store.RunFilter{Status: store.StatusRunning})
	queued, _ := u.DB.Runs(store.RunFilter{Status: store.StatusQueued})
	var parts []string
	u.mu.Lock()
	switch {
	case u.eng != nil:
		parts = append(parts, "GPU: "+u.eng.Info.Name)
	case u.engErr != nil:
		parts = append(parts, "GPU: unavailable")
	default:
		parts = append(parts, "GPU: opening…")
	}
	u.mu.Unlock()
	if len(runs) > 0 {
		r := runs[0]
		text := kindTitle(r.Kind) + " running"
		if up, ok := u.lastUpdate[r.ID]; ok && up.Run.Progress.Total > 0 {
			text += ": "
			if up.Phase != "" {
				text += up.Phase + ", "
			}
			text += progressText(up.Run.Progress.Step, up.Run.Progress.Total, up.Rate, up.ETA)
		}
		parts = append(parts, text)
	}
	if len(queued) > 0 {
		parts = append(parts, fmt.Sprintf("%d queued", len(queued)))
	}
	u.statusBar.SetText(strings.Join(parts, "  ·  "))
}

func (u *UI) openEngine() {
	e, err := u.opts.Open(u.App.Preferences().String(PrefAdapter))
	u.mu.Lock()
	u.eng, u.engErr = e, err
	u.mu.Unlock()
	close(u.engReady)
	fyne.Do(func() {
		if err != nil {
			u.Adapter.SetText("GPU: " + err.Error())
		} else {
			u.Adapter.SetText("GPU: " + e.Info.String())
			u.Check.Enable()
		}
		u.updateStatusBar()
		u.Settings.Refresh()
	})
}

// engine waits for the engine to open (the Runner's engine source).
func (u *UI) engine() (*gpu.Engine, error) {
	<-u.engReady
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.eng == nil && u.engErr == nil {
		return nil, errors.New("the GPU engine is closed")
	}
	return u.eng, u.engErr
}

// Engine returns the opened engine, or nil.
func (u *UI) Engine() *gpu.Engine {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.eng
}

func (u *UI) memoryBudget() uint64 {
	gib := u.App.Preferences().Float(PrefMemoryGiB)
	if gib <= 0 {
		return 0
	}
	return uint64(gib * (1 << 30))
}

// showError shows err in a dialog (call on the Fyne goroutine).
func (u *UI) showError(err error) {
	if err != nil {
		dialog.ShowError(err, u.Win)
	}
}

// showErrorAsync shows err from a background goroutine.
func (u *UI) showErrorAsync(err error) {
	if err != nil {
		fyne.Do(func() { u.showError(err) })
	}
}

// OpenSubject shows a subject's page in the Library tab.
func (u *UI) OpenSubject(id string) {
	if err := u.Subject.Load(id); err != nil {
		u.showError(err)
		return
	}
	u.libStack.Objects = []fyne.CanvasObject{u.Subject.root}
	u.libStack.Refresh()
	u.ShowTab("Library")
}

// ShowLibrary returns the Library tab to the subject grid.
func (u *UI) ShowLibrary() {
	u.Subject.id = ""
	u.libStack.Objects = []fyne.CanvasObject{u.Library.root}
	u.libStack.Refresh()
	u.Library.Refresh()
}

// confirmClose asks before closing the window while a job runs.
func (u *UI) confirmClose() {
	running, _ := u.DB.Runs(store.RunFilter{Status: store.StatusRunning})
	queued, _ := u.DB.Runs(store.RunFilter{Status: store.StatusQueued})
	if len(running)+len(queued) == 0 {
		u.Win.Close()
		return
	}
	dialog.ShowConfirm("Quit InstructBooth?", "A job is running. Quitting interrupts it; you can resume it from Jobs next time.",
		func(ok bool) {
			if ok {
				u.Win.Close()
			}
		}, u.Win)
}

// Close cancels running jobs (they become interrupted) and releases the
// engine. It does not close the database.
func (u *UI) Close() {
	u.mu.Lock()
	if u.closing {
		u.mu.Unlock()
		return
	}
	u.closing = true
	u.mu.Unlock()
	if u.unsub != nil {
		u.unsub()
	}
	u.Runner.Close()
	<-u.engReady
	u.mu.Lock()
	e := u.eng
	u.eng = nil
	u.mu.Unlock()
	if e != nil && !u.opts.KeepEngine {
		e.Close()
	}
}

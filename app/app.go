// Package app is InstructBooth's desktop UI (Fyne). It builds windows on a
// fyne.App handed to it, so the same code runs in the real binary
// (cmd/instructbooth) and under Fyne's headless test driver. Nothing
// imports app.
//
// Today the window shows the GPU the engine runs on and can run the
// engine's self-check with a progress bar; the subject library, jobs,
// gallery and compare views are built on this shell.
package app

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/icons"
)

// Opener opens the GPU engine (gpu.Open with the user's adapter choice).
type Opener func() (*gpu.Engine, error)

// UI is the main window and its state. Its fields are for tests; the UI
// updates them only on Fyne's goroutine (fyne.Do).
type UI struct {
	App      fyne.App
	Win      fyne.Window
	Adapter  *widget.Label
	Status   *widget.Label
	Progress *widget.ProgressBar
	Check    *widget.Button
	Log      *widget.Label

	open Opener
	mu   sync.Mutex
	eng  *gpu.Engine
	done chan struct{} // closed when a self-check finishes (tests wait on it)
}

// New builds the main window on a. The engine is opened in the background;
// the window is usable at once.
func New(a fyne.App, open Opener) *UI {
	u := &UI{App: a, open: open}
	u.Win = a.NewWindow("InstructBooth")
	u.Win.SetIcon(fyne.NewStaticResource("icon.png", icons.AppPNG))
	u.Adapter = widget.NewLabel("GPU: opening…")
	u.Status = widget.NewLabel("")
	u.Progress = widget.NewProgressBar()
	u.Log = widget.NewLabel("")
	u.Log.TextStyle = fyne.TextStyle{Monospace: true}
	u.Check = widget.NewButtonWithIcon("Run GPU self-check", theme.MediaPlayIcon(), u.runCheck)
	u.Check.Disable()
	title := widget.NewLabelWithStyle("InstructBooth", fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	intro := widget.NewLabel("Personalize Stable Diffusion with a few photos of your subject, then align it to follow prompts.")
	intro.Wrapping = fyne.TextWrapWord
	gpuCard := widget.NewCard("GPU", "", container.NewVBox(u.Adapter, u.Check, u.Progress, u.Status))
	u.Win.SetContent(container.NewBorder(container.NewVBox(title, intro, gpuCard), nil, nil, nil, container.NewVScroll(u.Log)))
	u.Win.Resize(fyne.NewSize(720, 520))
	go u.openEngine()
	return u
}

func (u *UI) openEngine() {
	e, err := u.open()
	fyne.Do(func() {
		if err != nil {
			u.Adapter.SetText("GPU: " + err.Error())
			return
		}
		u.mu.Lock()
		u.eng = e
		u.mu.Unlock()
		u.Adapter.SetText("GPU: " + e.Info.String())
		u.Check.Enable()
	})
}

// Engine returns the opened engine, or nil.
func (u *UI) Engine() *gpu.Engine {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.eng
}

// runCheck runs gpu.SelfCheck on a background goroutine, streaming its
// lines into the log and the progress bar.
func (u *UI) runCheck() {
	e := u.Engine()
	if e == nil {
		return
	}
	u.Check.Disable()
	u.Progress.SetValue(0)
	u.Status.SetText("Running…")
	u.Log.SetText("")
	u.done = make(chan struct{})
	done := u.done
	pr, pw := io.Pipe()
	go func() {
		err := gpu.SelfCheck(e, pw, time.Now().UnixNano())
		pw.CloseWithError(err)
	}()
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		var lines []string
		for sc.Scan() {
			line := sc.Text()
			lines = append(lines, line)
			frac, ok := progressOf(line)
			text := strings.Join(lines, "\n")
			fyne.DoAndWait(func() {
				u.Log.SetText(text)
				if ok {
					u.Progress.SetValue(frac)
				}
			})
		}
		err := sc.Err()
		fyne.DoAndWait(func() {
			if err != nil {
				u.Status.SetText("Self-check failed: " + err.Error())
			} else {
				u.Progress.SetValue(1)
				u.Status.SetText("Self-check passed: every op matches its CPU reference.")
			}
			u.Check.Enable()
		})
	}()
}

// progressOf reads "[ 3/25] ..." lines.
func progressOf(line string) (float64, bool) {
	var i, n int
	if _, err := fmt.Sscanf(strings.TrimSpace(line), "[%d/%d]", &i, &n); err != nil || n == 0 {
		return 0, false
	}
	return float64(i) / float64(n), true
}

// WaitCheck blocks until the running self-check has finished (tests).
func (u *UI) WaitCheck(timeout time.Duration) bool {
	if u.done == nil {
		return false
	}
	select {
	case <-u.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// Close releases the engine.
func (u *UI) Close() {
	if e := u.Engine(); e != nil {
		e.Close()
	}
}

package app

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/store"
)

// SettingsView holds the base models, the GPU adapter choice and
// self-check, the memory budget and the data directory.
type SettingsView struct {
	u        *UI
	root     fyne.CanvasObject
	Models   *fyne.Container
	NoModel  *widget.Label
	Default  *widget.RadioGroup
	Adapter  *widget.SelectEntry
	Memory   *widget.Select
	DataDir  *widget.Label
	models   []store.BaseModel
	toyBtn   *widget.Button
	restartN *widget.Label
}

// memoryOptions are the budget choices (GiB; 0 no limit).
var memoryOptions = []float64{0, 2, 3, 4, 6, 8, 12, 16, 24, 48, 80}

func memoryLabel(gib float64) string {
	if gib <= 0 {
		return "No limit"
	}
	return fmt.Sprintf("%g GiB", gib)
}

func newSettingsView(u *UI) *SettingsView {
	v := &SettingsView{u: u}
	prefs := u.App.Preferences()

	v.NoModel = widget.NewLabel(noBaseModelText(u.opts.ToyDemo != nil))
	v.NoModel.Wrapping = fyne.TextWrapWord
	v.toyBtn = widget.NewButton("Open the toy world demo", func() {
		if u.opts.ToyDemo != nil {
			u.opts.ToyDemo()
		}
	})
	v.Default = widget.NewRadioGroup(nil, func(label string) {
		for _, m := range v.models {
			if modelLabel(m) == label {
				prefs.SetString(PrefBaseModel, m.ID)
			}
		}
	})
	v.Models = container.NewVBox()
	addFile := widget.NewButtonWithIcon("Add checkpoint file…", theme.FileIcon(), v.pickFile)
	addDir := widget.NewButtonWithIcon("Add diffusers folder…", theme.FolderOpenIcon(), v.pickFolder)
	models := widget.NewCard("Base models", "Stable Diffusion 1.x checkpoints on this computer (they stay where they are).",
		container.NewVBox(v.NoModel, v.toyBtn, v.Default, v.Models, container.NewHBox(addFile, addDir)))

	v.Adapter = widget.NewSelectEntry([]string{"automatic", "discrete", "integrated", "cpu"})
	cur := prefs.String(PrefAdapter)
	if cur == "" {
		cur = "automatic"
	}
	v.Adapter.SetText(cur)
	v.restartN = widget.NewLabel("")
	v.Adapter.OnChanged = func(s string) {
		s = strings.TrimSpace(s)
		if s == "automatic" {
			s = ""
		}
		if s != prefs.String(PrefAdapter) {
			prefs.SetString(PrefAdapter, s)
			v.restartN.SetText("The new adapter is used from the next start of InstructBooth.")
		}
	}
	gpuCard := widget.NewCard("GPU", "",
		container.NewVBox(u.Adapter,
			widget.NewForm(&widget.FormItem{Text: "Adapter", Widget: v.Adapter, HintText: "automatic prefers a discrete GPU, then an integrated one, then the CPU (lavapipe); or type part of a name"}),
			v.restartN, u.Check, u.Progress, u.Status, u.Log))

	labels := make([]string, len(memoryOptions))
	for i, g := range memoryOptions {
		labels[i] = memoryLabel(g)
	}
	v.Memory = widget.NewSelect(labels, func(label string) {
		for _, g := range memoryOptions {
			if memoryLabel(g) == label {
				prefs.SetFloat(PrefMemoryGiB, g)
			}
		}
	})
	v.Memory.SetSelected(memoryLabel(prefs.Float(PrefMemoryGiB)))
	memCard := widget.NewCard("Memory budget", "GPU memory InstructBooth may use. Trainers pick batch size and gradient checkpointing by it; "+
		"a loaded model that does not fit is unloaded between jobs.", v.Memory)

	v.DataDir = widget.NewLabel("")
	v.DataDir.Wrapping = fyne.TextWrapBreak
	change := widget.NewButtonWithIcon("Change…", theme.FolderOpenIcon(), v.pickDataDir)
	dataCard := widget.NewCard("Data directory", "Where the database (subjects, runs, checkpoints, gallery) lives.",
		container.NewVBox(v.DataDir, change))

	title := widget.NewLabelWithStyle("Settings", fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	v.root = container.NewBorder(title, nil, nil, nil, container.NewVScroll(container.NewVBox(models, gpuCard, memCard, dataCard)))
	v.Refresh()
	return v
}

func modelLabel(m store.BaseModel) string { return m.Name + "  —  " + m.Path }

// Refresh reloads the base models and the data directory.
func (v *SettingsView) Refresh() {
	ms, err := v.u.DB.BaseModels()
	if err != nil {
		v.u.showError(err)
		return
	}
	v.models = ms
	showIf(v.NoModel, len(ms) == 0)
	showIf(v.toyBtn, len(ms) == 0 && v.u.opts.ToyDemo != nil)
	labels := make([]string, len(ms))
	v.Models.Objects = nil
	for i, m := range ms {
		labels[i] = modelLabel(m)
		id := m.ID
		info := fmt.Sprintf("%s · %s", m.Name, humanBytes(m.Size))
		if _, err := os.Stat(m.Path); err != nil {
			info += " · MISSING: " + m.Path
		}
		rm := widget.NewButtonWithIcon("Remove "+m.Name, theme.DeleteIcon(), func() {
			if err := v.u.DB.DeleteBaseModel(id); err != nil {
				v.u.showError(err)
			}
			v.Refresh()
		})
		rm.Importance = widget.LowImportance
		v.Models.Add(container.NewBorder(nil, nil, nil, rm, widget.NewLabel(info)))
	}
	v.Default.Options = labels
	v.Default.Selected = ""
	if bm, ok := v.u.DefaultBaseModel(); ok {
		v.Default.Selected = modelLabel(bm)
	}
	v.Default.Refresh()
	v.Models.Refresh()
	dir := v.u.opts.DataDir
	if dir == "" {
		dir = filepath.Dir(v.u.DB.Path())
	}
	text := dir
	if next := v.u.App.Preferences().String(PrefDataDir); next != "" && filepath.Clean(next) != filepath.Clean(dir) {
		text += "\nFrom the next start: " + next
	}
	v.DataDir.SetText(text)
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d KiB", n>>10)
}

// AddBaseModel records a checkpoint (a diffusers folder or a .safetensors
// file) as a base model, hashing a file's bytes, and makes it the default
// when it is the first. The weights are not loaded here: a broken
// checkpoint fails its first job with the loader's error.
func (u *UI) AddBaseModel(path string) (store.BaseModel, error) {
	path = filepath.Clean(path)
	st, err := os.Stat(path)
	if err != nil {
		return store.BaseModel{}, err
	}
	m := store.BaseModel{Name: filepath.Base(path), Path: path, Arch: "sd1"}
	if st.IsDir() {
		if _, err := os.Stat(filepath.Join(path, "model_index.json")); err != nil {
			return m, fmt.Errorf("%s is not a diffusers folder (it has no model_index.json); choose the folder that holds unet/, vae/ and text_encoder/, or a single .safetensors file", path)
		}
		err = filepath.WalkDir(path, func(_ string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				if info, err := d.Info(); err == nil {
					m.Size += info.Size()
				}
			}
			return nil
		})
	} else {
		if !strings.EqualFold(filepath.Ext(path), ".safetensors") {
			return m, fmt.Errorf("%s: only .safetensors checkpoints load (.ckpt files are Python pickles, which InstructBooth does not run)", path)
		}
		m.Name = strings.TrimSuffix(m.Name, filepath.Ext(m.Name))
		m.Size = st.Size()
		m.Hash, err = fileHash(path)
	}
	if err != nil {
		return m, err
	}
	if err := u.DB.PutBaseModel(&m); err != nil {
		return m, err
	}
	if _, ok := u.DefaultBaseModel(); !ok || u.App.Preferences().String(PrefBaseModel) == "" {
		u.App.Preferences().SetString(PrefBaseModel, m.ID)
	}
	return m, nil
}

func fileHash(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, bufio.NewReaderSize(f, 1<<20)); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// addModelAsync adds a base model in the background (hashing a large file
// takes a while) and refreshes Settings.
func (v *SettingsView) addModelAsync(path string) {
	go func() {
		_, err := v.u.AddBaseModel(path)
		fyne.Do(func() {
			v.u.showError(err)
			v.Refresh()
		})
	}()
}

func (v *SettingsView) pickFile() {
	d := dialog.NewFileOpen(func(r fyne.URIReadCloser, err error) {
		if err != nil || r == nil {
			v.u.showError(err)
			return
		}
		path := r.URI().Path()
		r.Close()
		v.addModelAsync(path)
	}, v.u.Win)
	d.Resize(fyne.NewSize(800, 560))
	d.Show()
}

func (v *SettingsView) pickFolder() {
	d := dialog.NewFolderOpen(func(uri fyne.ListableURI, err error) {
		if err != nil || uri == nil {
			v.u.showError(err)
			return
		}
		v.addModelAsync(uri.Path())
	}, v.u.Win)
	d.Resize(fyne.NewSize(800, 560))
	d.Show()
}

func (v *SettingsView) pickDataDir() {
	d := dialog.NewFolderOpen(func(uri fyne.ListableURI, err error) {
		if err != nil || uri == nil {
			v.u.showError(err)
			return
		}
		v.u.App.Preferences().SetString(PrefDataDir, uri.Path())
		v.Refresh()
		dialog.ShowInformation("Data directory", "InstructBooth will use "+uri.Path()+
			" from its next start (a new database is created there if it has none; the current one stays where it is).", v.u.Win)
	}, v.u.Win)
	d.Resize(fyne.NewSize(800, 560))
	d.Show()
}

// runCheck runs gpu.SelfCheck while no job uses the GPU, streaming its
// lines into the log and the progress bar.
func (u *UI) runCheck() {
	u.Check.Disable()
	u.Progress.SetValue(0)
	u.Status.SetText("Waiting for the GPU…")
	u.Log.SetText("")
	u.done = make(chan struct{})
	done := u.done
	pr, pw := io.Pipe()
	go func() {
		err := u.Runner.WithGPU(func(e *gpu.Engine, _ *Models) error {
			fyne.Do(func() { u.Status.SetText("Running…") })
			return gpu.SelfCheck(e, pw, time.Now().UnixNano())
		})
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

package app

import (
	"fmt"
	"path/filepath"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/widget"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/lora"
	"github.com/instructbooth/instructbooth/store"
)

// Export formats as the dialog names them.
var exportFormats = []struct {
	label  string
	format lora.Format
}{
	{"kohya (A1111, ComfyUI)", lora.Kohya},
	{"diffusers (load_lora_weights)", lora.Diffusers},
}

// ExportLoRA writes a LoRA checkpoint of the store to path in the given
// layout (lora.Kohya or lora.Diffusers), with the subject's identifier and
// class noun, the base model's hash and the step in the file's metadata.
// The adapters are read against the run's base model (loaded on the GPU
// goroutine, after any running job), so a file that does not fit the model
// is an error here rather than in the user's other tools.
func (u *UI) ExportLoRA(checkpointID string, format lora.Format, path string) error {
	c, err := u.DB.Checkpoint(checkpointID)
	if err != nil {
		return err
	}
	run, err := u.DB.Run(c.RunID)
	if err != nil {
		return err
	}
	meta := lora.Meta{Steps: c.Step}
	if s, err := u.DB.Subject(run.SubjectID); err == nil {
		meta.Identifier, meta.ClassNoun, meta.Description = s.Identifier, s.Class, s.Description
	}
	baseID := run.BaseModelID
	if bm, err := u.DB.BaseModel(baseID); err == nil {
		meta.BaseModelHash = bm.Hash
	}
	return u.Runner.WithGPU(func(_ *gpu.Engine, m *Models) error {
		pl, _, err := m.Base(baseID)
		if err != nil {
			return err
		}
		l, err := LoadCheckpointLoRA(u.DB, checkpointID, pl)
		if err != nil {
			return err
		}
		defer l.Release()
		return lora.Save(path, l.Set, format, meta.Map())
	})
}

// ShowExportLoRA asks for a format and a file and exports the latest
// checkpoint of a personalize or align run.
func (u *UI) ShowExportLoRA(runID string) {
	c, err := u.DB.LatestCheckpoint(runID)
	if err != nil {
		u.showError(fmt.Errorf("this run has saved no checkpoint yet: %w", err))
		return
	}
	labels := make([]string, len(exportFormats))
	for i, f := range exportFormats {
		labels[i] = f.label
	}
	radio := widget.NewRadioGroup(labels, nil)
	radio.SetSelected(labels[0])
	info := widget.NewLabel(fmt.Sprintf("LoRA of %s.\nkohya files load in AUTOMATIC1111 and ComfyUI; "+
		"diffusers files with pipeline.load_lora_weights.", u.checkpointLabel(c.ID)))
	info.Wrapping = fyne.TextWrapWord
	dialog.ShowCustomConfirm("Export LoRA", "Choose file…", "Cancel", fixedWidth(460, container.NewVBox(info, radio)), func(ok bool) {
		if !ok {
			return
		}
		format := lora.Kohya
		for _, f := range exportFormats {
			if f.label == radio.Selected {
				format = f.format
			}
		}
		d := dialog.NewFileSave(func(w fyne.URIWriteCloser, err error) {
			if err != nil || w == nil {
				u.showError(err)
				return
			}
			path := w.URI().Path()
			w.Close() // lora.Save writes the file atomically itself
			go func() {
				err := u.ExportLoRA(c.ID, format, path)
				fyne.Do(func() {
					if err != nil {
						u.showError(err)
						return
					}
					dialog.ShowInformation("Export LoRA", "Saved "+path, u.Win)
				})
			}()
		}, u.Win)
		d.SetFileName(loraFileName(u, runID, format))
		d.Resize(fyne.NewSize(800, 560))
		d.Show()
	}, u.Win)
}

// loraFileName is "<subject>-<kind>-<format>.safetensors".
func loraFileName(u *UI, runID string, f lora.Format) string {
	name := "lora"
	if r, err := u.DB.Run(runID); err == nil {
		if s, err := u.DB.Subject(r.SubjectID); err == nil {
			name = strings.ToLower(strings.Join(strings.Fields(s.Name), "-"))
		}
		if r.Kind == store.KindAlign {
			name += "-aligned"
		}
	}
	return filepath.Base(name + "-" + string(f) + ".safetensors")
}

// Command instructbooth is the InstructBooth desktop app.
//
//	instructbooth [-data DIR] [-adapter NAME] [-model PATH] [-demo] [-tab NAME] [-subject NAME] [-generate PROMPT]
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"fyne.io/fyne/v2"
	fyneapp "fyne.io/fyne/v2/app"
	"fyne.io/fyne/v2/widget"

	"github.com/instructbooth/instructbooth/app"
	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/store"
)

// AppID is the application id; FyneApp.toml says the same.
const AppID = "io.instructbooth.app"

func main() {
	adapter := flag.String("adapter", "", "GPU adapter: discrete, integrated, cpu or part of a name (default: Settings, then $"+gpu.AdapterEnv+")")
	data := flag.String("data", "", "data directory holding "+store.FileName+" (default: Settings, then $INSTRUCTBOOTH_DATA, then the platform's)")
	model := flag.String("model", "", "add this Stable Diffusion 1.x checkpoint (diffusers folder or .safetensors) as a base model")
	demo := flag.Bool("demo", false, "fill an empty database with demo subjects")
	tab := flag.String("tab", "", "tab to show first: Library, Jobs, Gallery, Compare or Settings")
	subject := flag.String("subject", "", "open the subject with this name")
	genPrompt := flag.String("generate", "", "start generating 4 images of this prompt (on the -subject, with the default base model)")
	flag.Parse()

	a := fyneapp.NewWithID(AppID)
	path, err := dbPath(*data, a.Preferences().String(app.PrefDataDir))
	if err != nil {
		fatal(a, err)
		return
	}
	db, err := store.Open(path, nil)
	if err != nil {
		if errors.Is(err, store.ErrLocked) {
			err = fmt.Errorf("InstructBooth is already running with the data in %s (close the other window first).\n\n%w", filepath.Dir(path), err)
		}
		fatal(a, err)
		return
	}
	defer db.Close()
	if *demo {
		if err := app.SeedDemo(db); err != nil {
			fatal(a, err)
			return
		}
	}

	reg := app.DefaultRegistry() // Generate
	// The trainers, each an app.Factory adapting its package to app.Job:
	reg[store.KindPersonalize] = app.NewPersonalizeJob // training/dreambooth
	reg[store.KindAlign] = app.NewAlignJob             // training/ddpo
	reg[store.KindEvaluate] = app.NewEvaluateJob       // training/evaluate
	reg[store.KindDemo] = app.NewDemoJob               // training/toyworld/demo

	u := app.New(a, app.Options{
		DB: db,
		Open: func(pref string) (*gpu.Engine, error) {
			if *adapter != "" {
				pref = *adapter
			}
			return gpu.Open(gpu.Options{Adapter: pref})
		},
		Registry: reg,
		DataDir:  filepath.Dir(path),
	})
	if *model != "" {
		if err := addModel(u, *model); err != nil {
			fmt.Fprintln(os.Stderr, "instructbooth:", err)
		}
		u.Settings.Refresh()
	}
	if *tab != "" {
		u.ShowTab(strings.ToUpper((*tab)[:1]) + strings.ToLower((*tab)[1:]))
	}
	subjectID := ""
	if *subject != "" {
		subs, _ := db.Subjects()
		for _, s := range subs {
			if strings.EqualFold(s.Name, *subject) {
				subjectID = s.ID
				u.OpenSubject(s.ID)
			}
		}
	}
	if *genPrompt != "" {
		cfg := app.DefaultGenerateConfig()
		cfg.Prompt, cfg.Seed = *genPrompt, 1
		if _, err := u.StartRun(store.KindGenerate, subjectID, "", cfg); err != nil {
			fmt.Fprintln(os.Stderr, "instructbooth: -generate:", err)
		}
	}
	u.Win.ShowAndRun()
	u.Close()
}

// addModel records path as a base model unless one with that path exists.
func addModel(u *app.UI, path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	ms, err := u.DB.BaseModels()
	if err != nil {
		return err
	}
	for _, m := range ms {
		if filepath.Clean(m.Path) == abs {
			return nil
		}
	}
	_, err = u.AddBaseModel(abs)
	return err
}

// dbPath is the database file: in the -data folder, else the folder chosen
// in Settings, else store.DefaultPath.
func dbPath(flagDir, prefDir string) (string, error) {
	for _, d := range []string{flagDir, prefDir} {
		if d != "" {
			abs, err := filepath.Abs(d)
			if err != nil {
				return "", err
			}
			return filepath.Join(abs, store.FileName), nil
		}
	}
	return store.DefaultPath()
}

// fatal shows an error that keeps the app from starting, in a window of
// its own, and prints it.
func fatal(a fyne.App, err error) {
	fmt.Fprintln(os.Stderr, "instructbooth:", err)
	w := a.NewWindow("InstructBooth cannot start")
	l := widget.NewLabel(err.Error())
	l.Wrapping = fyne.TextWrapWord
	w.SetContent(l)
	w.Resize(fyne.NewSize(520, 200))
	w.ShowAndRun()
}

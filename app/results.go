package app

import (
	"fmt"
	"image"
	"os"
	"path/filepath"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/canvas"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/widget"

	"github.com/instructbooth/instructbooth/store"
	"github.com/instructbooth/instructbooth/training/evaluate"
	"github.com/instructbooth/instructbooth/training/toyworld/demo"
)

// Results is what the results view of a finished evaluation (or demo
// run) shows: the summary table of results.md (a header row, then one row
// per model with "mean ± standard error" per metric), chart.png and, for a
// demo run, grid.png and notes from the run's metrics.
type Results struct {
	Title string
	Dir   string
	Table [][]string
	Chart image.Image // nil when chart.png is missing
	Grid  image.Image // demo runs: the evaluation's images; nil otherwise
	Notes []string    // lines shown under the table
}

// toyMetricTitles are the toy world metrics' names in the results table.
var toyMetricTitles = map[string]string{
	demo.AlignMetric:    "text fidelity (" + demo.AlignMetric + ")",
	demo.FidelityMetric: "subject fidelity (" + demo.FidelityMetric + ")",
}

// LoadResults reads the report files an Evaluate run wrote into its
// RunDir, or a demo run into DemoDir's results folder.
func (u *UI) LoadResults(runID string) (Results, error) {
	run, err := u.DB.Run(runID)
	if err != nil {
		return Results{}, err
	}
	r := Results{Title: "Evaluation results", Dir: RunDir(u.DB, runID)}
	if run.Kind == store.KindDemo {
		r.Title, r.Dir = "Toy world demo: results", filepath.Join(DemoDir(u.DB, runID), demo.DirResults)
	}
	md, err := os.ReadFile(filepath.Join(r.Dir, evaluate.FileMarkdown))
	if err != nil {
		return Results{}, fmt.Errorf("this run has no results yet: %w", err)
	}
	r.Table = markdownTable(string(md))
	if b, err := os.ReadFile(filepath.Join(r.Dir, evaluate.FileChart)); err == nil {
		r.Chart, _ = decodeBytes(b)
	}
	if run.Kind != store.KindDemo {
		return r, nil
	}
	if len(r.Table) > 0 {
		for k, h := range r.Table[0] {
			if t, ok := toyMetricTitles[h]; ok {
				r.Table[0][k] = t
			}
		}
	}
	if b, err := os.ReadFile(filepath.Join(r.Dir, evaluate.FileGrid)); err == nil {
		r.Grid, _ = decodeBytes(b)
	}
	if pts := run.Metrics["reward"]; len(pts) > 0 {
		var vals []string
		for _, p := range pts {
			vals = append(vals, fmt.Sprintf("%.3f", p.Value))
		}
		r.Notes = append(r.Notes, "DDPO mean reward per epoch: "+strings.Join(vals, ", "))
	}
	r.Notes = append(r.Notes,
		"Text fidelity: the share of the prompt's attributes (background, accessory, action) that the image shows. "+
			"Subject fidelity: the cosine of the image's features with the subject's photos. "+
			"InstructBooth should keep DreamBooth's subject fidelity while raising its text fidelity.")
	return r, nil
}

// markdownTable returns the cells of the first table of a Markdown text
// (the separator row left out).
func markdownTable(md string) [][]string {
	var rows [][]string
	for _, line := range strings.Split(md, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "|") {
			if len(rows) > 0 {
				break
			}
			continue
		}
		line = strings.ReplaceAll(strings.Trim(line, "|"), `\|`, "\x00")
		var cells []string
		sep := true
		for _, c := range strings.Split(line, "|") {
			c = strings.TrimSpace(strings.ReplaceAll(c, "\x00", "|"))
			sep = sep && strings.Trim(c, "-:") == "" && c != ""
			cells = append(cells, c)
		}
		if !sep {
			rows = append(rows, cells)
		}
	}
	return rows
}

// ShowResults opens the results of a finished Evaluate run: its summary
// table and bar chart, and where the files are.
func (u *UI) ShowResults(runID string) {
	r, err := u.LoadResults(runID)
	if err != nil {
		u.showError(err)
		return
	}
	content := container.NewVBox()
	if len(r.Table) > 0 {
		grid := container.NewGridWithColumns(len(r.Table[0]))
		for i, row := range r.Table {
			for k := range r.Table[0] {
				cell := ""
				if k < len(row) {
					cell = row[k]
				}
				l := widget.NewLabel(cell)
				if i == 0 || k == 0 {
					l.TextStyle = fyne.TextStyle{Bold: true}
				}
				grid.Add(l)
			}
		}
		content.Add(grid)
	}
	for _, n := range r.Notes {
		l := widget.NewLabel(n)
		l.Wrapping = fyne.TextWrapWord
		content.Add(l)
	}
	for i, pic := range []image.Image{r.Chart, r.Grid} {
		if pic == nil {
			continue
		}
		img := canvas.NewImageFromImage(pic)
		img.FillMode = canvas.ImageFillContain
		b := pic.Bounds()
		w := float32(min(b.Dx(), 640))
		if i == 1 {
			img.ScaleMode = canvas.ImageScalePixels // 32-pixel images: show them twice their size, sharp
			w = float32(min(2*b.Dx(), 640))
		}
		img.SetMinSize(fyne.NewSize(w, w*float32(b.Dy())/float32(max(b.Dx(), 1))))
		content.Add(img)
	}
	where := widget.NewLabel("Mean ± standard error over the images. Tables (Markdown, CSV), chart and image grid: " + r.Dir)
	where.Wrapping = fyne.TextWrapWord
	content.Add(where)
	d := dialog.NewCustom(r.Title, "Close", container.NewVScroll(content), u.Win)
	d.Resize(fyne.NewSize(720, 640))
	d.Show()
}

// RunLog returns the text of a run's log file ("" when it has none).
func (u *UI) RunLog(runID string) string {
	b, _ := os.ReadFile(filepath.Join(RunDir(u.DB, runID), RunLogFile))
	return string(b)
}

// ShowRunLog shows a run's log: skipped photos, resumes, checkpoints.
func (u *UI) ShowRunLog(runID string) {
	text := u.RunLog(runID)
	if text == "" {
		text = "This run has written no notes."
	}
	l := widget.NewLabel(text)
	l.TextStyle = fyne.TextStyle{Monospace: true}
	l.Wrapping = fyne.TextWrapWord
	d := dialog.NewCustom("Run log", "Close", container.NewVScroll(l), u.Win)
	d.Resize(fyne.NewSize(720, 480))
	d.Show()
}

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

	"github.com/instructbooth/instructbooth/training/evaluate"
)

// Results is what the results view of a finished evaluation shows: the
// summary table of results.md (a header row, then one row per model with
// "mean ± standard error" per metric) and chart.png.
type Results struct {
	Dir   string
	Table [][]string
	Chart image.Image // nil when chart.png is missing
}

// LoadResults reads the report files an Evaluate run wrote into its
// RunDir.
func (u *UI) LoadResults(runID string) (Results, error) {
	dir := RunDir(u.DB, runID)
	md, err := os.ReadFile(filepath.Join(dir, evaluate.FileMarkdown))
	if err != nil {
		return Results{}, fmt.Errorf("this evaluation has no results yet: %w", err)
	}
	r := Results{Dir: dir, Table: markdownTable(string(md))}
	if b, err := os.ReadFile(filepath.Join(dir, evaluate.FileChart)); err == nil {
		r.Chart, _ = decodeBytes(b)
	}
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
	if r.Chart != nil {
		img := canvas.NewImageFromImage(r.Chart)
		img.FillMode = canvas.ImageFillContain
		b := r.Chart.Bounds()
		img.SetMinSize(fyne.NewSize(float32(min(b.Dx(), 640)), float32(min(b.Dx(), 640))*float32(b.Dy())/float32(max(b.Dx(), 1))))
		content.Add(img)
	}
	where := widget.NewLabel("Mean ± standard error over the images. Tables (Markdown, CSV), chart and image grid: " + r.Dir)
	where.Wrapping = fyne.TextWrapWord
	content.Add(where)
	d := dialog.NewCustom("Evaluation results", "Close", container.NewVScroll(content), u.Win)
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

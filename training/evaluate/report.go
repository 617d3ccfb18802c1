package evaluate

import (
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/instructbooth/instructbooth/model/metrics"
)

// Report holds every sample's scores.
type Report struct {
	Runs    []string // in generation order
	Metrics []string // in scoring order
	Prompts []string // filled prompt texts, by prompt index
	Samples []Sample
	// Scores[metric][i] is sample i's score.
	Scores map[string][]float64
}

// NewReport indexes samples (runs and prompts in order of appearance);
// scores are added by Score.
func NewReport(samples []Sample) *Report {
	r := &Report{Samples: samples, Scores: map[string][]float64{}}
	seen := map[string]bool{}
	for _, s := range samples {
		if !seen[s.Run] {
			seen[s.Run] = true
			r.Runs = append(r.Runs, s.Run)
		}
		for len(r.Prompts) <= s.Prompt {
			r.Prompts = append(r.Prompts, "")
		}
		r.Prompts[s.Prompt] = s.Text
	}
	return r
}

// values returns the scores of metric for run, and the prompt index of
// each.
func (r *Report) values(run, metric string) (vals []float64, prompts []int) {
	sc := r.Scores[metric]
	for i, s := range r.Samples {
		if s.Run == run && i < len(sc) {
			vals = append(vals, sc[i])
			prompts = append(prompts, s.Prompt)
		}
	}
	return vals, prompts
}

// Summary is the mean and standard error of metric over all of run's
// images.
func (r *Report) Summary(run, metric string) metrics.Summary {
	v, _ := r.values(run, metric)
	return metrics.Summarize(v)
}

// Paired summarises metric's per-image difference run - baseline over
// the images both runs drew for the same prompt and image number (and so
// from the same seed): with shared starting noise most of the image-to-
// image spread cancels, so the difference's standard error is far smaller
// than the two runs' own. Images without a partner are left out.
func (r *Report) Paired(run, baseline, metric string) metrics.Summary {
	sc := r.Scores[metric]
	type key struct{ prompt, index int }
	base := map[key]float64{}
	for i, s := range r.Samples {
		if s.Run == baseline && i < len(sc) {
			base[key{s.Prompt, s.Index}] = sc[i]
		}
	}
	var d []float64
	for i, s := range r.Samples {
		if b, ok := base[key{s.Prompt, s.Index}]; ok && s.Run == run && i < len(sc) {
			d = append(d, sc[i]-b)
		}
	}
	return metrics.Summarize(d)
}

// PerPrompt summarises metric for run per prompt, by prompt index
// (Group.Key is the prompt text).
func (r *Report) PerPrompt(run, metric string) []metrics.Group {
	v, ps := r.values(run, metric)
	out := make([]metrics.Group, len(r.Prompts))
	byPrompt := make([][]float64, len(r.Prompts))
	for i, p := range ps {
		byPrompt[p] = append(byPrompt[p], v[i])
	}
	for p := range out {
		out[p] = metrics.Group{Key: r.Prompts[p], Summary: metrics.Summarize(byPrompt[p])}
	}
	return out
}

// Markdown renders Table 2: one row per run, "mean ± standard error" per
// metric, then a per-prompt table for each metric.
func (r *Report) Markdown() string {
	var b strings.Builder
	n := 0
	if len(r.Runs) > 0 && len(r.Metrics) > 0 {
		n = r.Summary(r.Runs[0], r.Metrics[0]).N
	}
	fmt.Fprintf(&b, "# Evaluation\n\n%d prompts, %d images per run; mean ± standard error over images.\n\n", len(r.Prompts), n)
	b.WriteString("| run |")
	for _, m := range r.Metrics {
		fmt.Fprintf(&b, " %s |", m)
	}
	b.WriteString("\n|---|")
	for range r.Metrics {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, run := range r.Runs {
		fmt.Fprintf(&b, "| %s |", mdEscape(run))
		for _, m := range r.Metrics {
			fmt.Fprintf(&b, " %s |", r.Summary(run, m))
		}
		b.WriteString("\n")
	}
	if len(r.Runs) > 1 {
		fmt.Fprintf(&b, "\nPaired differences from %s (same prompt and seed): mean ± standard error.\n\n| run |", mdEscape(r.Runs[0]))
		for _, m := range r.Metrics {
			fmt.Fprintf(&b, " %s |", m)
		}
		b.WriteString("\n|---|")
		for range r.Metrics {
			b.WriteString("---|")
		}
		b.WriteString("\n")
		for i, run := range r.Runs[1:] {
			for _, base := range r.Runs[:i+1] {
				fmt.Fprintf(&b, "| %s − %s |", mdEscape(run), mdEscape(base))
				for _, m := range r.Metrics {
					s := r.Paired(run, base, m)
					fmt.Fprintf(&b, " %+.4f ± %.4f |", s.Mean, s.StdErr)
				}
				b.WriteString("\n")
			}
		}
	}
	for _, m := range r.Metrics {
		fmt.Fprintf(&b, "\n## %s per prompt\n\n| # | prompt |", m)
		for _, run := range r.Runs {
			fmt.Fprintf(&b, " %s |", mdEscape(run))
		}
		b.WriteString("\n|---|---|")
		for range r.Runs {
			b.WriteString("---|")
		}
		b.WriteString("\n")
		groups := make([][]metrics.Group, len(r.Runs))
		for i, run := range r.Runs {
			groups[i] = r.PerPrompt(run, m)
		}
		for p, text := range r.Prompts {
			fmt.Fprintf(&b, "| %d | %s |", p+1, mdEscape(text))
			for i := range r.Runs {
				fmt.Fprintf(&b, " %s |", groups[i][p].Summary)
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}

func mdEscape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

func ftoa(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

// WriteSummaryCSV writes run,metric,n,mean,stderr.
func (r *Report) WriteSummaryCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	cw.Write([]string{"run", "metric", "n", "mean", "stderr"})
	for _, run := range r.Runs {
		for _, m := range r.Metrics {
			s := r.Summary(run, m)
			cw.Write([]string{run, m, strconv.Itoa(s.N), ftoa(s.Mean), ftoa(s.StdErr)})
		}
	}
	cw.Flush()
	return cw.Error()
}

// WritePerPromptCSV writes run,metric,prompt_index,prompt,n,mean,stderr.
func (r *Report) WritePerPromptCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	cw.Write([]string{"run", "metric", "prompt_index", "prompt", "n", "mean", "stderr"})
	for _, run := range r.Runs {
		for _, m := range r.Metrics {
			for p, g := range r.PerPrompt(run, m) {
				cw.Write([]string{run, m, strconv.Itoa(p), g.Key, strconv.Itoa(g.N), ftoa(g.Mean), ftoa(g.StdErr)})
			}
		}
	}
	cw.Flush()
	return cw.Error()
}

// WriteScoresCSV writes one row per image: run, prompt_index, prompt,
// image, seed, path, then one column per metric (full precision).
func (r *Report) WriteScoresCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	cw.Write(append([]string{"run", "prompt_index", "prompt", "image", "seed", "path"}, r.Metrics...))
	for i, s := range r.Samples {
		row := []string{s.Run, strconv.Itoa(s.Prompt), s.Text, strconv.Itoa(s.Index), strconv.FormatUint(s.Seed, 10), filepath.ToSlash(s.Path)}
		for _, m := range r.Metrics {
			row = append(row, ftoa(r.Scores[m][i]))
		}
		cw.Write(row)
	}
	cw.Flush()
	return cw.Error()
}

// Output file names written by WriteFiles.
const (
	FileMarkdown  = "results.md"
	FileSummary   = "summary.csv"
	FilePerPrompt = "per_prompt.csv"
	FileScores    = "scores.csv"
	FileChart     = "chart.png"
	FileGrid      = "grid.png"
)

// WriteFiles writes the Markdown table, the three CSV files, the bar
// chart and the image grid into dir and returns their paths.
func (r *Report) WriteFiles(dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var paths []string
	write := func(name string, f func(io.Writer) error) error {
		p := filepath.Join(dir, name)
		tmp := p + ".tmp"
		fh, err := os.Create(tmp)
		if err != nil {
			return err
		}
		err = f(fh)
		if cerr := fh.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp, p)
		}
		if err != nil {
			os.Remove(tmp)
			return fmt.Errorf("%s: %w", p, err)
		}
		paths = append(paths, p)
		return nil
	}
	steps := []struct {
		name string
		f    func(io.Writer) error
	}{
		{FileMarkdown, func(w io.Writer) error { _, err := io.WriteString(w, r.Markdown()); return err }},
		{FileSummary, r.WriteSummaryCSV},
		{FilePerPrompt, r.WritePerPromptCSV},
		{FileScores, r.WriteScoresCSV},
		{FileChart, r.WriteChart},
		{FileGrid, r.WriteGrid},
	}
	for _, s := range steps {
		if err := write(s.name, s.f); err != nil {
			return paths, err
		}
	}
	return paths, nil
}

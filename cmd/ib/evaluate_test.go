package main

import (
	"context"
	"encoding/csv"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/instructbooth/instructbooth/internal/testenv"
	"github.com/instructbooth/instructbooth/model/clip"
	"github.com/instructbooth/instructbooth/model/dino"
	"github.com/instructbooth/instructbooth/model/imagereward"
	"github.com/instructbooth/instructbooth/model/metrics"
	"github.com/instructbooth/instructbooth/training/evaluate"
)

func readCSV(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return rows
}

func decodePNG(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return img
}

// TestEvaluate_endToEnd runs `ib evaluate` on the tiny SD model with and
// without a LoRA, two prompts, one image each, with the tiny CLIP as
// CLIP-T, PickScore and CLIP-I, checks every output file, and recomputes
// every score directly from the written PNGs.
func TestEvaluate_endToEnd(t *testing.T) {
	needGPU(t)
	fx := testenv.Fixtures(t)
	tmp := t.TempDir()
	out := filepath.Join(tmp, "out")
	subj := filepath.Join(tmp, "subject")
	os.MkdirAll(subj, 0o755)
	for i, c := range []color.NRGBA{{200, 40, 40, 255}, {30, 160, 90, 255}} {
		img := image.NewNRGBA(image.Rect(0, 0, 48+8*i, 40))
		for p := 0; p < len(img.Pix); p += 4 {
			img.Pix[p], img.Pix[p+1], img.Pix[p+2], img.Pix[p+3] = c.R+uint8(p%7), c.G, c.B+uint8(p%13), 255
		}
		f, _ := os.Create(filepath.Join(subj, strconv.Itoa(i)+".png"))
		png.Encode(f, img)
		f.Close()
	}
	os.WriteFile(filepath.Join(subj, "notes.txt"), []byte("ignored"), 0o644)
	prompts := filepath.Join(tmp, "prompts.txt")
	os.WriteFile(prompts, []byte("# two prompts\nplaying soccer\n\na {} in the snow\n"), 0o644)
	clipDir := filepath.Join(fx, "rewards-tiny", "clip")
	irPath := filepath.Join(fx, "rewards-tiny", "imagereward", "ImageReward.safetensors")
	dinoPath := filepath.Join(fx, "rewards-tiny", "dino", "dino_vit_tiny16.pth")
	t.Setenv("INSTRUCTBOOTH_BERT_VOCAB", filepath.Join(fx, "bert-vocab", "vocab.txt"))
	code, stdout, stderr := ib(t, "evaluate", "--model", filepath.Join(fx, "sd-tiny", "diffusers"),
		"--lora", filepath.Join(fx, "sd-tiny", "lora", "lora_diffusers.safetensors"),
		"--class", "dog", "--identifier", "sks", "--subject", subj, "--prompts", prompts,
		"--metrics", "clip-t:"+clipDir+",pickscore:"+clipDir+",clip-i:"+clipDir+",imagereward:"+irPath+",dino:"+dinoPath,
		"--images-per-prompt", "1", "--seed", "40", "--steps", "2", "--width", "64", "--height", "64", "--out", out)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	t.Log(stderr)
	if !strings.Contains(stderr, "it/s") || !strings.Contains(stderr, "ETA") {
		t.Error("no progress lines with rate and ETA")
	}
	var listed []string
	for _, l := range strings.Split(strings.TrimSpace(stdout), "\n") {
		listed = append(listed, filepath.Base(l))
		if _, err := os.Stat(l); err != nil {
			t.Errorf("listed output %s: %v", l, err)
		}
	}
	want := []string{evaluate.FileMarkdown, evaluate.FileSummary, evaluate.FilePerPrompt, evaluate.FileScores, evaluate.FileChart, evaluate.FileGrid}
	if strings.Join(listed, " ") != strings.Join(want, " ") {
		t.Errorf("stdout lists %v, want %v", listed, want)
	}
	runs := []string{"base", "lora_diffusers"}
	mets := []string{"clip-t", "pickscore", "clip-i", "imagereward", "dino"}

	// Per-image scores, recomputed from the PNGs.
	rows := readCSV(t, filepath.Join(out, evaluate.FileScores))
	if len(rows) != 1+4 || strings.Join(rows[0], ",") != "run,prompt_index,prompt,image,seed,path,clip-t,pickscore,clip-i,imagereward,dino" {
		t.Fatalf("scores.csv: %v", rows)
	}
	e := testenv.Engine(t)
	m, err := clip.LoadModel(e, clipDir, clip.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Release()
	tok, err := clip.LoadHF(filepath.Join(fx, "sd-tiny", "diffusers", "tokenizer"))
	if err != nil {
		t.Fatal(err)
	}
	refs, err := evaluate.ReadReferenceImages(subj)
	if err != nil || len(refs) != 2 {
		t.Fatalf("references: %d, %v", len(refs), err)
	}
	var texts []string
	var imgs []image.Image
	var samples []evaluate.Sample
	wantPrompts := []string{"a sks dog playing soccer", "a sks dog in the snow"}
	for i, r := range rows[1:] {
		run, p, k := r[0], r[1], r[3]
		if run != runs[i/2] || p != strconv.Itoa(i%2) || k != "0" || r[2] != wantPrompts[i%2] || r[4] != strconv.Itoa(40+i%2) {
			t.Errorf("scores.csv row %d: %v", i, r)
		}
		img := decodePNG(t, filepath.Join(out, r[5]))
		if b := img.Bounds(); b.Dx() != 64 || b.Dy() != 64 {
			t.Errorf("%s: %v", r[5], b)
		}
		texts, imgs = append(texts, r[2]), append(imgs, img)
		pi, _ := strconv.Atoi(p)
		samples = append(samples, evaluate.Sample{Run: run, Prompt: pi, Text: r[2], Image: image.NewNRGBA(img.Bounds())})
	}
	// The same seeds in both runs, yet the LoRA changes the images.
	if same(imgs[0], imgs[2]) {
		t.Error("the LoRA run drew the base run's image")
	}
	recomputed := map[string][]float64{}
	ctx := context.Background()
	if recomputed["clip-t"], err = metrics.NewCLIPT(m, tok).Score(ctx, texts, imgs); err != nil {
		t.Fatal(err)
	}
	if recomputed["pickscore"], err = metrics.NewPickScore(m, tok).Score(ctx, texts, imgs); err != nil {
		t.Fatal(err)
	}
	ci := &metrics.EmbeddingFidelity{Label: "clip-i", Embedder: &metrics.CLIPImageEmbedder{Model: m}}
	if recomputed["clip-i"], err = ci.ScoreSubject(ctx, refs, imgs); err != nil {
		t.Fatal(err)
	}
	ir, err := imagereward.Load(e, irPath, imagereward.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ir.Release()
	if recomputed["imagereward"], err = metrics.NewImageReward(ir).Score(ctx, texts, imgs); err != nil {
		t.Fatal(err)
	}
	dm, err := dino.Load(e, dinoPath, dino.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer dm.Release()
	if recomputed["dino"], err = metrics.NewDINO(dm).ScoreSubject(ctx, refs, imgs); err != nil {
		t.Fatal(err)
	}
	for j, name := range mets {
		for i, r := range rows[1:] {
			got, err := strconv.ParseFloat(r[6+j], 64)
			if err != nil {
				t.Fatal(err)
			}
			if d := math.Abs(got - recomputed[name][i]); d > 1e-6*math.Max(1, math.Abs(got)) {
				t.Errorf("%s row %d: %g in scores.csv, recomputed %g", name, i, got, recomputed[name][i])
			}
		}
	}

	// Summary: mean and standard error of the per-image values.
	sum := readCSV(t, filepath.Join(out, evaluate.FileSummary))
	if len(sum) != 1+len(runs)*len(mets) {
		t.Fatalf("summary.csv has %d rows", len(sum))
	}
	for i, r := range sum[1:] {
		run, name := runs[i/len(mets)], mets[i%len(mets)]
		if r[0] != run || r[1] != name || r[2] != "2" {
			t.Errorf("summary row %v", r)
			continue
		}
		ri := i / len(mets)
		s := metrics.Summarize(recomputed[name][2*ri : 2*ri+2])
		mean, _ := strconv.ParseFloat(r[3], 64)
		se, _ := strconv.ParseFloat(r[4], 64)
		if math.Abs(mean-s.Mean) > 1e-6*math.Max(1, math.Abs(s.Mean)) || math.Abs(se-s.StdErr) > 1e-6*math.Max(1, s.StdErr) {
			t.Errorf("summary %s %s: %g ± %g, recomputed %v", run, name, mean, se, s)
		}
	}
	if pp := readCSV(t, filepath.Join(out, evaluate.FilePerPrompt)); len(pp) != 1+len(runs)*len(mets)*2 {
		t.Errorf("per_prompt.csv has %d rows", len(pp))
	}

	// Markdown: a row per run in the main table, a per-prompt table per metric.
	md, _ := os.ReadFile(filepath.Join(out, evaluate.FileMarkdown))
	for _, run := range runs {
		if !strings.Contains(string(md), "| "+run+" | ") {
			t.Errorf("results.md has no row for %s:\n%s", run, md)
		}
	}
	if n := strings.Count(string(md), "per prompt"); n != len(mets) {
		t.Errorf("results.md has %d per-prompt tables", n)
	}

	// Figures with the expected sizes.
	cw, ch := evaluate.ChartSize(len(mets), len(runs))
	if b := decodePNG(t, filepath.Join(out, evaluate.FileChart)).Bounds(); b.Dx() != cw || b.Dy() != ch {
		t.Errorf("chart.png %v, want %dx%d", b, cw, ch)
	}
	gw, gh, _, _ := evaluate.NewReport(samples).GridSize()
	if b := decodePNG(t, filepath.Join(out, evaluate.FileGrid)).Bounds(); b.Dx() != gw || b.Dy() != gh {
		t.Errorf("grid.png %v, want %dx%d", b, gw, gh)
	}
}

func same(a, b image.Image) bool {
	if a.Bounds() != b.Bounds() {
		return false
	}
	for y := a.Bounds().Min.Y; y < a.Bounds().Max.Y; y++ {
		for x := a.Bounds().Min.X; x < a.Bounds().Max.X; x++ {
			if a.At(x, y) != b.At(x, y) {
				return false
			}
		}
	}
	return true
}

func TestEvaluate_usageErrors(t *testing.T) {
	needGPU(t)
	fx := testenv.Fixtures(t)
	model := filepath.Join(fx, "sd-tiny", "diffusers")
	clipDir := filepath.Join(fx, "rewards-tiny", "clip")
	out := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--class", "dog", "--metrics", "clip-t:" + clipDir, "--out", out}, "--model"},
		{[]string{"--model", model, "--metrics", "clip-t:" + clipDir, "--out", out}, "--class"},
		{[]string{"--model", model, "--class", "dog", "--out", out}, "--metrics"},
		{[]string{"--model", model, "--class", "dog", "--metrics", "hpsv2:" + clipDir, "--out", out}, "not available"},
		{[]string{"--model", model, "--class", "dog", "--metrics", "clip-t", "--out", out}, "NAME:PATH"},
		{[]string{"--model", model, "--class", "dog", "--metrics", "clip-t:/nonexistent", "--out", out}, "nonexistent"},
		{[]string{"--model", model, "--class", "dog", "--metrics", "clip-i:" + clipDir, "--out", out}, "--subject"},
		{[]string{"--model", model, "--class", "spaceship", "--metrics", "clip-t:" + clipDir, "--out", out}, "activity group"},
		{[]string{"--model", model, "--class", "dog", "--base=false", "--metrics", "clip-t:" + clipDir, "--out", out}, "nothing to evaluate"},
	} {
		code, _, stderr := ib(t, append([]string{"evaluate"}, c.args...)...)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", c.args, code, stderr, c.want)
		}
	}
}

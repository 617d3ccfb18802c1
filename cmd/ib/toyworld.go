package main

import (
	"context"
	"fmt"
	"github.com/instructbooth/instructbooth/model/sched"
	"image"
	"image/png"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/generate"
	"github.com/instructbooth/instructbooth/model/sd"
	"github.com/instructbooth/instructbooth/training/toyworld"
)

const toyworldUsage = `usage: ib toyworld <command> [flags]

The built-in toy world (training/toyworld): procedurally drawn scenes with
captions, a DreamBooth subject ("sks star"), and a small base model with
SD 1.x's architecture.

commands:
  sample   render world scenes (or the subject's photos) to PNG files
  train    train the toy base model (VAE, then text encoder + U-Net)
  eval     generate from a model for world captions and score the images
  score    score an image against a prompt (and the subject's photos)
`

// toyworldCmd dispatches "ib toyworld <command>".
func toyworldCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) < 1 {
		fmt.Fprint(stderr, toyworldUsage)
		return usagef("a toyworld command is required")
	}
	switch args[0] {
	case "sample":
		return toySample(args[1:], stdout, stderr)
	case "train":
		return toyTrain(args[1:], stdout, stderr)
	case "eval":
		return toyEval(args[1:], stdout, stderr)
	case "score":
		return toyScore(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, toyworldUsage)
		return nil
	}
	fmt.Fprint(stderr, toyworldUsage)
	return usagef("unknown toyworld command %q", args[0])
}

// writeSheet writes images as one contact sheet PNG.
func writeSheet(path string, imgs []image.Image, cols int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, toyworld.Sheet(imgs, cols)); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// toySample renders scenes i = 0..n-1 of the base world under --seed (or
// the subject's DreamBooth photos with --subject) to DIR/NNNN.png, each
// with its caption in the PNG's text chunk, plus DIR/sheet.png and
// DIR/captions.txt.
func toySample(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("toyworld sample", stderr)
	n := fs.Int("n", 40, "number of scenes")
	seed := fs.Uint64("seed", 1, "world seed")
	size := fs.Int("size", 64, "image size: 32, 64 or 128")
	out := fs.String("out", "toyworld-samples", "output folder")
	subject := fs.Bool("subject", false, "render the subject's DreamBooth photos instead")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *n < 1 {
		return usagef("--n must be positive")
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	var scenes []toyworld.Scene
	if *subject {
		scenes = toyworld.TheSubject().Photos(*seed, *n)
	} else {
		for i := 0; i < *n; i++ {
			scenes = append(scenes, toyworld.SampleScene(*seed, i))
		}
	}
	var imgs []image.Image
	var caps strings.Builder
	for i, s := range scenes {
		img, err := toyworld.Render(s, *size)
		if err != nil {
			return usageError{err}
		}
		c := s.Caption()
		path := filepath.Join(*out, fmt.Sprintf("%04d.png", i))
		if err := generate.WritePNG(path, img, []generate.TextEntry{{Key: "Description", Value: c}}); err != nil {
			return err
		}
		imgs = append(imgs, img)
		fmt.Fprintf(&caps, "%04d.png\t%s\n", i, c)
	}
	if err := os.WriteFile(filepath.Join(*out, "captions.txt"), []byte(caps.String()), 0o644); err != nil {
		return err
	}
	if err := writeSheet(filepath.Join(*out, "sheet.png"), imgs, 10); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d scenes in %s (sheet.png, captions.txt)\n", len(scenes), *out)
	return nil
}

// parseInts reads "32,64".
func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("%q: want positive integers separated by commas", s)
		}
		out = append(out, v)
	}
	return out, nil
}

// toyTrain trains the toy base model into --out (resuming a run found
// there), then measures the VAE and the model's prompt alignment.
func toyTrain(args []string, stdout, stderr io.Writer) error {
	d := toyworld.DefaultTrainOptions("")
	fs := newFlags("toyworld train", stderr)
	out := fs.String("out", "toyworld-model", "output diffusers folder (resumed when it holds a run)")
	seed := fs.Uint64("seed", d.Seed, "random seed (weights, data, noise)")
	steps := fs.Int("steps", d.Steps, "diffusion training steps (text encoder + U-Net)")
	batch := fs.Int("batch", d.Batch, "diffusion batch size")
	lr := fs.Float64("lr", float64(d.LR), "diffusion peak learning rate (cosine to lr/10)")
	vaeSteps := fs.Int("vae-steps", d.VAESteps, "VAE training steps")
	vaeBatch := fs.Int("vae-batch", d.VAEBatch, "VAE batch size")
	vaeLR := fs.Float64("vae-lr", float64(d.VAELR), "VAE peak learning rate")
	kl := fs.Float64("kl", float64(d.KLWeight), "KL weight of the VAE loss")
	vaeShare := fs.Float64("vae-share", d.VAEShare, "share of --time-limit the VAE stage may use")
	dropout := fs.Float64("caption-dropout", d.CaptionDropout, "share of empty captions (classifier-free guidance)")
	freezeText := fs.Bool("freeze-text", false, "keep the text encoder at its random initialisation")
	unetCh := fs.String("unet-channels", joinInts(d.Config.UNet.BlockOutChannels), "U-Net block_out_channels")
	vae := fs.String("vae", "codec", "latent space: codec (fixed 4x4 pixel codec, 32x32 images, 48 channels) or kl (an AutoencoderKL trained first, 64x64 images)")
	prediction := fs.String("prediction", d.Config.Prediction, "U-Net target: v_prediction or epsilon (a resumed run may switch)")
	latentCh := fs.Int("latent-channels", 4, "latent channels of the kl VAE and the U-Net (SD 1.x has 4)")
	timeLimit := fs.Duration("time-limit", 0, "stop cleanly (saving) after this long, e.g. 5m (0: no limit)")
	ckpt := fs.Int("checkpoint-every", d.CheckpointEvery, "save every N steps")
	every := fs.Int("progress-every", d.ProgressEvery, "progress line every N steps")
	evalN := fs.Int("eval", 40, "images generated for the final alignment evaluation (0: none)")
	adapter := fs.String("adapter", "", "GPU adapter choice")
	if err := parse(fs, args); err != nil {
		return err
	}
	ch, err := parseInts(*unetCh)
	if err != nil {
		return usagef("--unet-channels %v", err)
	}
	o := toyworld.DefaultTrainOptions(*out)
	o.Seed, o.Steps, o.Batch, o.LR = *seed, *steps, *batch, float32(*lr)
	o.VAESteps, o.VAEBatch, o.VAELR, o.KLWeight, o.VAEShare = *vaeSteps, *vaeBatch, float32(*vaeLR), float32(*kl), *vaeShare
	o.CaptionDropout, o.FreezeText, o.TimeLimit = *dropout, *freezeText, *timeLimit
	o.CheckpointEvery, o.ProgressEvery = *ckpt, *every
	if *prediction != sched.PredictV && *prediction != sched.PredictEpsilon {
		return usagef("--prediction %q: v_prediction or epsilon", *prediction)
	}
	o.Config.Prediction = *prediction
	switch *vae {
	case "codec":
		o.Config = o.Config.WithShape(ch, o.Config.VAE.LatentChannels)
	case "kl":
		if *latentCh < 1 {
			return usagef("--latent-channels must be positive")
		}
		o.Config.VAE, o.Config.Codec, o.Config.ImageSize = toyworld.VAEConfig64(), 0, 64
		o.Config = o.Config.WithShape(ch, *latentCh)
	default:
		return usagef("--vae %q: codec or kl", *vae)
	}
	o.Progress = func(p toyworld.Progress) { fmt.Fprintln(stdout, p) }

	e, err := gpu.Open(gpu.Options{Adapter: *adapter})
	if err != nil {
		return err
	}
	defer e.Close()
	fmt.Fprintf(stderr, "adapter: %s\n", e.Info)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	res, err := toyworld.Train(ctx, e, o)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "trained %d VAE steps (loss %.5f), %d diffusion steps (loss %.5f) in %s; latent scale x%.3g; done: %v\n",
		res.VAEStep, res.VAELoss, res.Step, res.BaseLoss, res.Elapsed.Round(time.Second), res.LatentScale, res.Done)
	fmt.Fprintf(stdout, "model: %s\n", *out)
	if *evalN <= 0 || ctx.Err() != nil {
		return nil
	}
	return evaluateModel(ctx, e, *out, *evalN, 20, 5, filepath.Join(*out, "train"), stdout)
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}

// evaluateModel loads the model at dir, measures its VAE and its prompt
// alignment over n world captions, and writes eval.png and eval.txt into
// outDir.
func evaluateModel(ctx context.Context, e *gpu.Engine, dir string, n, steps int, guidance float64, outDir string, stdout io.Writer) error {
	p, err := sd.Load(e, dir, sd.LoadOptions{})
	if err != nil {
		return err
	}
	m, err := toyworld.FromPipeline(p, toyworld.DefaultModelConfig())
	if err != nil {
		p.Release()
		return err
	}
	defer m.Release()
	rec, err := toyworld.MeasureReconstruction(m, 64)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, rec)
	start := time.Now()
	v, err := toyworld.Evaluate(ctx, m, toyworld.EvalOptions{N: n, Steps: steps, Guidance: float32(guidance), Seed: 0x6576616c})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s (%d DDIM steps, guidance %g, %s)\n", v, steps, guidance, time.Since(start).Round(time.Second))
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return err
	}
	var lines strings.Builder
	fmt.Fprintf(&lines, "%s\n%s\n", rec, v)
	for i, pr := range v.Prompt {
		fmt.Fprintf(&lines, "%d\t%s\n", i, pr)
	}
	if err := os.WriteFile(filepath.Join(outDir, "eval.txt"), []byte(lines.String()), 0o644); err != nil {
		return err
	}
	if err := writeSheet(filepath.Join(outDir, "eval.png"), v.Images, 10); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "images: %s\n", filepath.Join(outDir, "eval.png"))
	return nil
}

// toyEval evaluates a trained toy model.
func toyEval(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("toyworld eval", stderr)
	model := fs.String("model", "", "toy model folder")
	n := fs.Int("n", 40, "images (one per world caption)")
	steps := fs.Int("steps", 20, "DDIM steps")
	guidance := fs.Float64("guidance", 5, "classifier-free guidance scale")
	out := fs.String("out", "", "folder for eval.png and eval.txt (default: MODEL/train)")
	adapter := fs.String("adapter", "", "GPU adapter choice")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *model == "" {
		return usagef("--model is required")
	}
	if *out == "" {
		*out = filepath.Join(*model, "train")
	}
	e, err := gpu.Open(gpu.Options{Adapter: *adapter})
	if err != nil {
		return err
	}
	defer e.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	return evaluateModel(ctx, e, *model, *n, *steps, *guidance, *out, stdout)
}

// toyScore prints the alignment of an image with a prompt, attribute by
// attribute, and its fidelity to the built-in subject's photos.
func toyScore(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("toyworld score", stderr)
	imgPath := fs.String("image", "", "PNG image (square, a multiple of 32 pixels a side)")
	prompt := fs.String("prompt", "", "prompt to score against")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *imgPath == "" {
		return usagef("--image is required")
	}
	f, err := os.Open(*imgPath)
	if err != nil {
		return err
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		return fmt.Errorf("%s: %w", *imgPath, err)
	}
	p, err := toyworld.PixelsFromImage(img)
	if err != nil {
		return fmt.Errorf("%s: %w", *imgPath, err)
	}
	a := toyworld.Align(p, *prompt)
	fmt.Fprintf(stdout, "alignment %.3f", a.Score)
	for _, k := range a.Names() {
		fmt.Fprintf(stdout, "  %s %.3f", k, a.Parts[k])
	}
	fmt.Fprintln(stdout)
	sub := toyworld.TheSubject()
	var photos []*toyworld.Pixels
	for _, s := range sub.Photos(1, 5) {
		v, _ := toyworld.RenderFloat(s, 64)
		ph, _ := toyworld.PixelsFromFloat(v, 64)
		photos = append(photos, ph)
	}
	ref, err := toyworld.NewSubjectRef(photos)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "subject fidelity (%s) %.3f\n", sub.Look.Name, ref.Fidelity(p))
	return nil
}

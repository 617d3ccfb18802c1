package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/instructbooth/instructbooth/gpu"
	"github.com/instructbooth/instructbooth/model/lora"
	"github.com/instructbooth/instructbooth/model/sd"
	"github.com/instructbooth/instructbooth/training"
)

// TestAlign_endToEnd trains one epoch on the tiny model with the
// brightness reward on top of the fixture's personalised LoRA, checks the
// written LoRA and the printed statistics, then extends the run to two
// epochs, which resumes from the work folder.
func TestAlign_endToEnd(t *testing.T) {
	needGPU(t)
	fx := fixtures(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "aligned.safetensors")
	acts := filepath.Join(dir, "activities.txt")
	os.WriteFile(acts, []byte("playing soccer\nriding a bike\n"), 0o644)
	args := []string{"align", "--model", filepath.Join(fx, "diffusers"), "--lora", filepath.Join(fx, "lora", "lora_kohya.safetensors") + ":0.8",
		"--class", "dog", "--identifier", "sks", "--activities", acts, "--reward", "brightness",
		"--samples-per-epoch", "2", "--samples-per-prompt", "2", "--pooled-std", "--batch", "2", "--steps", "2", "--guidance", "1", "--timestep-fraction", "0.5",
		"--resolution", "64", "--lr", "1e-3", "--seed", "5", "--out", out, "--format", "diffusers", "--f16-weights=false"}
	code, stdout, stderr := ib(t, append(args, "--epochs", "1")...)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	t.Logf("stdout:\n%s", stdout)
	if !strings.Contains(stdout, "epoch 1/1  reward 0.") || !strings.Contains(stdout, " dog playing soccer") && !strings.Contains(stdout, " dog riding a bike") || !strings.HasSuffix(strings.TrimSpace(stdout), out) {
		t.Fatalf("stdout:\n%s", stdout)
	}
	for _, want := range []string{"personalised lora", "128 U-Net layers fused", "4 prompts, reward brightness, seed 5", "epoch 1 sampling: step", "epoch 1 training: step", "peak GPU memory"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if _, step, _ := training.LatestCheckpoint(out + ".work"); step != 1 {
		t.Fatalf("work folder checkpoint at step %d", step)
	}
	// The file is a diffusers LoRA over the U-Net's 128 attention
	// projections with the run's metadata.
	e, err := gpu.Open(gpu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := sd.Load(e, filepath.Join(fx, "diffusers"), sd.LoadOptions{Components: sd.CompUNet})
	if err != nil {
		t.Fatal(err)
	}
	l, err := lora.Load(out, lora.Targets{UNet: p.UNet.W})
	if err != nil {
		t.Fatal(err)
	}
	if l.Format != lora.Diffusers || len(l.UNet) != 128 || l.Metadata[lora.KeyIdentifier] != "sks" || l.Metadata["ib_ddpo_reward"] != "brightness" || l.Metadata["ib_ddpo_epochs"] != "1" {
		t.Fatalf("written LoRA: format %s, %d adapters, metadata %v", l.Format, len(l.UNet), l.Metadata)
	}
	l.Release()
	p.Release()
	e.Close()

	// Two epochs on the same output: resumes after the first.
	code, stdout, stderr = ib(t, append(args, "--epochs", "2")...)
	if code != 0 || !strings.Contains(stderr, "resuming from") || !strings.Contains(stdout, "epoch 2/2") || strings.Contains(stdout, "epoch 1/2") {
		t.Fatalf("resumed run: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	// Another personalised LoRA scale is another model: refused.
	bad := append([]string(nil), args...)
	bad[4] = filepath.Join(fx, "lora", "lora_kohya.safetensors") + ":0.5"
	if code, _, stderr := ib(t, append(bad, "--epochs", "3")...); code != 1 || !strings.Contains(stderr, "Model") {
		t.Fatalf("resume with another LoRA scale: exit %d\n%s", code, stderr)
	}
}

// TestAlign_imageReward runs one epoch with the tiny ImageReward as the
// reward (the paper's setting, at fixture scale): the model loads on the
// command's engine and the epoch's rewards are ImageReward's.
func TestAlign_imageReward(t *testing.T) {
	needGPU(t)
	fx := fixtures(t)
	rw := filepath.Join(fx, "..", "rewards-tiny", "imagereward", "ImageReward.safetensors")
	t.Setenv("INSTRUCTBOOTH_BERT_VOCAB", filepath.Join(fx, "..", "bert-vocab", "vocab.txt"))
	dir := t.TempDir()
	out := filepath.Join(dir, "aligned.safetensors")
	acts := filepath.Join(dir, "activities.txt")
	os.WriteFile(acts, []byte("cooking a gourmet meal\n"), 0o644)
	code, stdout, stderr := ib(t, "align", "--model", filepath.Join(fx, "diffusers"), "--class", "dog", "--identifier", "sks",
		"--activities", acts, "--reward", "imagereward:"+rw, "--epochs", "1",
		"--samples-per-epoch", "2", "--batch", "2", "--steps", "2", "--guidance", "1",
		"--resolution", "64", "--seed", "3", "--out", out)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stderr, "reward imagereward") || !strings.Contains(stdout, "epoch 1/1  reward ") {
		t.Fatalf("stdout:\n%s\nstderr:\n%s", stdout, stderr)
	}
	if _, err := os.Stat(out); err != nil {
		t.Fatal(err)
	}
}

func TestAlign_usageErrors(t *testing.T) {
	model := filepath.Join(fixtures(t), "diffusers")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"align", "--model", model, "--reward", "brightness", "--out", "x"}, "--class is required"},
		{[]string{"align", "--model", model, "--class", "dog", "--out", "x"}, "--reward is required"},
		{[]string{"align", "--model", model, "--class", "dog", "--reward", "hpsv2:/m", "--out", "x"}, `"hpsv2" is not available`},
		{[]string{"align", "--model", model, "--class", "dog", "--reward", "imagereward:/nonexistent/m.pt", "--out", "x"}, "/nonexistent/m.pt"},
		{[]string{"align", "--model", model, "--class", "dog", "--reward", "imagereward", "--out", "x"}, "needs a model path"},
		{[]string{"align", "--model", model, "--class", "dog", "--reward", "jpeg", "--out", "x", "--format", "ckpt"}, "--format"},
		{[]string{"align", "--model", model, "--class", "dog", "--reward", "jpeg", "--out", "x", "--samples-per-epoch", "12"}, "multiple of the batch size"},
		{[]string{"align", "--model", model, "--class", "dog", "--reward", "jpeg", "--out", "x", "--samples-per-prompt", "3"}, "does not divide"},
		{[]string{"align", "--model", model, "--class", "dog", "--reward", "jpeg", "--out", "x", "--accum", "3"}, "gradient accumulation"},
		{[]string{"align", "--model", model, "--class", "dog", "--reward", "jpeg", "--out", "x", "--activities", "/nonexistent"}, "nonexistent"},
	} {
		code, _, stderr := ib(t, c.args...)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q (want %q)", c.args[1:], code, stderr, c.want)
		}
	}
}

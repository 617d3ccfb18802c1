// Package sched holds the diffusion noise schedules and samplers of Stable
// Diffusion 1.x: the DDPM forward process used in training, DDIM sampling
// with eta (eta = 1 gives DDPO's stochastic steps and their Gaussian
// log-probabilities), and classifier-free guidance. The per-step scalars are
// computed here on the CPU in float32 exactly as PyTorch computes them; the
// per-element work runs on the GPU through engine ops.
package sched

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
)

// Config is diffusers' scheduler_config.json (the fields SD 1.x uses).
type Config struct {
	NumTrainTimesteps int     `json:"num_train_timesteps"`
	BetaStart         float64 `json:"beta_start"`
	BetaEnd           float64 `json:"beta_end"`
	BetaSchedule      string  `json:"beta_schedule"`
	SetAlphaToOne     bool    `json:"set_alpha_to_one"`
	StepsOffset       int     `json:"steps_offset"`
	TimestepSpacing   string  `json:"timestep_spacing"`
	PredictionType    string  `json:"prediction_type"`
	ClipSample        bool    `json:"clip_sample"`
}

// SD15 is Stable Diffusion 1.5's scheduler configuration.
func SD15() Config {
	return Config{NumTrainTimesteps: 1000, BetaStart: 0.00085, BetaEnd: 0.012, BetaSchedule: "scaled_linear",
		SetAlphaToOne: false, StepsOffset: 1, TimestepSpacing: "leading", PredictionType: "epsilon"}
}

// LoadConfig reads a scheduler_config.json, rejecting settings this package
// does not implement.
func LoadConfig(path string) (Config, error) {
	c := SD15()
	b, err := os.ReadFile(path)
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	if c.BetaSchedule != "scaled_linear" && c.BetaSchedule != "linear" {
		return c, fmt.Errorf("%s: beta_schedule %q is not supported (scaled_linear, linear)", path, c.BetaSchedule)
	}
	if c.PredictionType != PredictEpsilon && c.PredictionType != PredictV {
		return c, fmt.Errorf("%s: prediction_type %q is not supported (epsilon, v_prediction)", path, c.PredictionType)
	}
	if c.TimestepSpacing != "leading" && c.TimestepSpacing != "trailing" && c.TimestepSpacing != "linspace" {
		return c, fmt.Errorf("%s: timestep_spacing %q is not supported", path, c.TimestepSpacing)
	}
	if c.NumTrainTimesteps < 2 {
		return c, fmt.Errorf("%s: num_train_timesteps %d", path, c.NumTrainTimesteps)
	}
	return c, nil
}

// linspace32 is torch.linspace in float32: the first half counts up from
// start, the second half counts down from end.
func linspace32(start, end float32, n int) []float32 {
	out := make([]float32, n)
	step := (end - start) / float32(n-1)
	half := n / 2
	for i := 0; i < n; i++ {
		if i < half {
			out[i] = start + step*float32(i)
		} else {
			out[i] = end - step*float32(n-1-i)
		}
	}
	return out
}

// Schedule holds the training noise schedule.
type Schedule struct {
	Config
	// AlphasCumprod[t] is abar_t in float32, as torch computes it.
	AlphasCumprod []float32
	// FinalAlphaCumprod is used past the last step (abar_0, or 1 with
	// set_alpha_to_one).
	FinalAlphaCumprod float32
}

// New computes the schedule for c.
func New(c Config) *Schedule {
	n := c.NumTrainTimesteps
	var betas []float32
	if c.BetaSchedule == "linear" {
		betas = linspace32(float32(c.BetaStart), float32(c.BetaEnd), n)
	} else {
		betas = linspace32(float32(math.Sqrt(c.BetaStart)), float32(math.Sqrt(c.BetaEnd)), n)
		for i := range betas {
			betas[i] *= betas[i]
		}
	}
	s := &Schedule{Config: c, AlphasCumprod: make([]float32, n)}
	p := float32(1)
	for i, b := range betas {
		p *= 1 - b
		s.AlphasCumprod[i] = p
	}
	s.FinalAlphaCumprod = s.AlphasCumprod[0]
	if c.SetAlphaToOne {
		s.FinalAlphaCumprod = 1
	}
	return s
}

// Timesteps returns the inference timesteps for steps steps, descending
// (diffusers' set_timesteps).
func (s *Schedule) Timesteps(steps int) []int {
	n := s.NumTrainTimesteps
	out := make([]int, steps)
	switch s.TimestepSpacing {
	case "trailing":
		ratio := float64(n) / float64(steps)
		for i := 0; i < steps; i++ {
			out[i] = int(math.Round(float64(n)-float64(i)*ratio)) - 1
		}
	case "linspace":
		for i := 0; i < steps; i++ {
			v := float64(n-1) * float64(steps-1-i) / float64(steps-1)
			out[i] = int(math.Round(v))
		}
	default: // leading
		ratio := n / steps
		for i := 0; i < steps; i++ {
			out[i] = (steps-1-i)*ratio + s.StepsOffset
		}
	}
	return out
}

// abar returns abar_t, or the final value for t < 0.
func (s *Schedule) abar(t int) float32 {
	if t < 0 {
		return s.FinalAlphaCumprod
	}
	return s.AlphasCumprod[t]
}

// DDIMCoeffs are the scalars of one DDIM step from t to prev:
//
//	x0    = (x_t - sqrt(1-abar_t) eps) / sqrt(abar_t)
//	mean  = sqrt(abar_prev) x0 + sqrt(1 - abar_prev - sigma^2) eps
//	      = A x_t + B eps
//	x_prev = mean + Sigma z
type DDIMCoeffs struct {
	T, Prev              int
	AbarT, AbarPrev      float32
	Sigma                float32
	A, B                 float32
	SqrtAbarT, SqrtOneMT float32
}

// DDIMStep computes the coefficients of the step from timestep t with eta,
// for a schedule of steps inference steps. The previous timestep is
// t - num_train/steps, clamped at 0 as DDPO does (which equals diffusers'
// final_alpha_cumprod for set_alpha_to_one = false).
func (s *Schedule) DDIMStep(t, steps int, eta float32) DDIMCoeffs {
	prev := t - s.NumTrainTimesteps/steps
	at := s.abar(t)
	var ap float32
	if prev < 0 {
		ap = s.FinalAlphaCumprod
		prev = 0
	} else {
		ap = s.abar(prev)
	}
	bt := 1 - at
	bp := 1 - ap
	variance := (bp / bt) * (1 - at/ap)
	sigma := eta * float32(math.Sqrt(float64(variance)))
	sqrtAt := float32(math.Sqrt(float64(at)))
	sqrtBt := float32(math.Sqrt(float64(bt)))
	sqrtAp := float32(math.Sqrt(float64(ap)))
	dir := float32(math.Sqrt(float64(bp - sigma*sigma)))
	return DDIMCoeffs{
		T: t, Prev: prev, AbarT: at, AbarPrev: ap, Sigma: sigma,
		A: sqrtAp / sqrtAt, B: dir - sqrtAp*sqrtBt/sqrtAt,
		SqrtAbarT: sqrtAt, SqrtOneMT: sqrtBt,
	}
}

// LogProbConst is log(sqrt(2 pi)).
var LogProbConst = math.Log(math.Sqrt(2 * math.Pi))

// RefDDIMStep is the plain-Go reference of one DDIM step on one batch
// element (float64 math on float32 inputs): it returns the mean, the sample
// mean + sigma z, and the DDPO log-probability of prevGiven (or of the
// sample when prevGiven is nil): the MEAN over elements of
// -(x - mean)^2 / (2 sigma^2) - log sigma - log sqrt(2 pi).
func RefDDIMStep(c DDIMCoeffs, xt, eps, z, prevGiven []float32) (mean, sample []float32, logProb float64) {
	mean = make([]float32, len(xt))
	sample = make([]float32, len(xt))
	at, ap, sg := float64(c.AbarT), float64(c.AbarPrev), float64(c.Sigma)
	for i := range xt {
		x0 := (float64(xt[i]) - math.Sqrt(1-at)*float64(eps[i])) / math.Sqrt(at)
		m := math.Sqrt(ap)*x0 + math.Sqrt(1-ap-sg*sg)*float64(eps[i])
		mean[i] = float32(m)
		s := m
		if z != nil {
			s += sg * float64(z[i])
		}
		sample[i] = float32(s)
	}
	x := sample
	if prevGiven != nil {
		x = prevGiven
	}
	sum := 0.0
	for i := range x {
		d := float64(x[i]) - float64(mean[i])
		sum += -d*d/(2*sg*sg) - math.Log(sg) - LogProbConst
	}
	return mean, sample, sum / float64(len(x))
}

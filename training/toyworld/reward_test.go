package toyworld

import (
	"math"
	"math/rand/v2"
	"testing"
)

// degrade imitates what a small diffusion model and its VAE do to an
// image: a Gaussian blur (sigma 1.2 pixels at 64x64), a global colour
// shift (up to ±0.05 per channel) and per-pixel noise (sigma 0.05).
func degrade(v []float32, n int, r *rand.Rand) []float32 {
	out := Blur(v, n, 1.2)
	for c := 0; c < 3; c++ {
		shift := 0.1 * (r.Float64() - 0.5)
		for i := c * n * n; i < (c+1)*n*n; i++ {
			out[i] = float32(clamp01(float64(out[i]) + shift + 0.05*r.NormFloat64()))
		}
	}
	return out
}

// view renders s at 64x64, degraded when r is not nil, and reads it at
// 32x32.
func view(t testing.TB, s Scene, r *rand.Rand) *Pixels {
	v, err := RenderFloat(s, 64)
	if err != nil {
		t.Fatal(err)
	}
	if r != nil {
		v = degrade(v, 64, r)
	}
	p, err := PixelsFromFloat(v, 64)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParsePrompt_roundTripsCaptions(t *testing.T) {
	r := NewRand(5, 5)
	for i := 0; i < 500; i++ {
		s := SampleScene(5, i)
		st := CaptionStyle{Photo: r.IntN(2) == 0}
		p := ParsePrompt(s.CaptionWith(st))
		want := Prompt{Class: s.Class, Color: s.Color, Background: s.Background, Accessory: s.Accessory, Action: s.Action}
		if s.Background == Plain {
			want.Background = AnyBackground // plain scenes say nothing of their background
		}
		if s.Accessory == NoAccessory {
			want.Accessory = AnyAccessory
		}
		if s.Action == NoAction {
			want.Action = AnyAction
		}
		if p != want {
			t.Fatalf("%q parsed as %+v, want %+v", s.CaptionWith(st), p, want)
		}
	}
}

func TestParsePrompt_phrases(t *testing.T) {
	for _, c := range []struct {
		text string
		want Prompt
	}{
		{"a photo of sks star on the grass", Prompt{Class: Star, Color: AnyColor, Background: Grass, Accessory: AnyAccessory, Action: AnyAction, Token: "sks"}},
		{"A SKS star, playing with a ball!", Prompt{Class: Star, Color: AnyColor, Background: AnyBackground, Accessory: AnyAccessory, Action: PlayingBall, Token: "sks"}},
		{"a cat playing with a ball", Prompt{Class: Cat, Color: AnyColor, Background: AnyBackground, Accessory: AnyAccessory, Action: PlayingBall}},
		{"a blue cup with popcorn on the water", Prompt{Class: Cup, Color: Blue, Background: Water, Accessory: Popcorn, Action: AnyAction}},
		{"a dog at night wearing a hat, lying down", Prompt{Class: AnyClass, Color: AnyColor, Background: Night, Accessory: Hat, Action: LyingDown}},
		{"", Prompt{Class: AnyClass, Color: AnyColor, Background: AnyBackground, Accessory: AnyAccessory, Action: AnyAction}},
	} {
		if got := ParsePrompt(c.text); got != c.want {
			t.Errorf("ParsePrompt(%q) = %+v, want %+v", c.text, got, c.want)
		}
	}
}

// argmax returns the index of the largest of f(0..n-1).
func argmax(n int, f func(int) float64) int {
	b := 0
	for k := 1; k < n; k++ {
		if f(k) > f(b) {
			b = k
		}
	}
	return b
}

// TestAnalysis_detectsAttributes: on random base-world scenes, the most
// probable value of every attribute is the true one, on clean renders and
// on degraded ones.
func TestAnalysis_detectsAttributes(t *testing.T) {
	const n = 300
	for _, degraded := range []bool{false, true} {
		var r *rand.Rand
		want := 0.98
		if degraded {
			r, want = NewRand(9, 9), 0.95
		}
		hits := map[string]int{}
		for i := 0; i < n; i++ {
			s := SampleScene(21, i)
			a := Analyze(view(t, s, r))
			ok := map[string]bool{
				"class":      argmax(5, func(k int) float64 { return a.ClassProb(Class(k)) }) == int(s.Class),
				"color":      argmax(5, func(k int) float64 { return a.ColorProb(Color(k)) }) == int(s.Color),
				"background": a.Background() == s.Background,
				"accessory":  argmax(3, func(k int) float64 { return a.AccessoryProb(Accessory(k)) }) == int(s.Accessory),
				"action":     argmax(4, func(k int) float64 { return a.ActionProb(Action(k)) }) == int(s.Action),
			}
			for k, v := range ok {
				if v {
					hits[k]++
				} else if testing.Verbose() {
					t.Logf("degraded=%v scene %d %q: %s wrong", degraded, i, s.Caption(), k)
				}
			}
		}
		for _, k := range []string{"class", "color", "background", "accessory", "action"} {
			rate := float64(hits[k]) / n
			t.Logf("degraded=%v %-10s accuracy %.3f", degraded, k, rate)
			if rate < want {
				t.Errorf("degraded=%v: %s accuracy %.3f < %.2f", degraded, k, rate, want)
			}
		}
	}
}

// mismatch returns s's caption with one named attribute changed to
// another value, and which attribute it changed.
func mismatch(s Scene, r *rand.Rand) (string, string) {
	m := s
	switch k := r.IntN(5); k {
	case 0:
		m.Class = Classes[(int(s.Class)+1+r.IntN(len(Classes)-1))%len(Classes)]
		return m.Caption(), "class"
	case 1:
		m.Color = Colors[(int(s.Color)+1+r.IntN(len(Colors)-1))%len(Colors)]
		return m.Caption(), "color"
	case 2:
		m.Background = Backgrounds[1+(int(s.Background)+r.IntN(len(Backgrounds)-2))%(len(Backgrounds)-1)]
		if m.Background == s.Background {
			m.Background = Backgrounds[1+int(s.Background)%(len(Backgrounds)-1)]
		}
		return m.Caption(), "background"
	case 3:
		m.Accessory = Accessories[1+(int(s.Accessory))%(len(Accessories)-1)]
		return m.Caption(), "accessory"
	default:
		m.Action = Actions[1+(int(s.Action)+r.IntN(len(Actions)-2))%(len(Actions)-1)]
		if m.Action == s.Action {
			m.Action = Actions[1+int(s.Action)%(len(Actions)-1)]
		}
		return m.Caption(), "action"
	}
}

// TestAlign_matchingBeatsMismatching: an image scores higher against its
// own caption than against the caption with one attribute changed, for
// more than 97% of random scenes (95% degraded), and matching captions
// score high on average.
func TestAlign_matchingBeatsMismatching(t *testing.T) {
	const n = 300
	for _, degraded := range []bool{false, true} {
		var r *rand.Rand
		want := 0.97
		if degraded {
			r, want = NewRand(10, 10), 0.95
		}
		rm := NewRand(11, 11)
		wins, sumMatch, sumMis := 0, 0.0, 0.0
		for i := 0; i < n; i++ {
			s := SampleScene(31, i)
			p := view(t, s, r)
			cap2, what := mismatch(s, rm)
			if ParsePrompt(cap2) == ParsePrompt(s.Caption()) {
				t.Fatalf("mismatch %q parses like %q", cap2, s.Caption())
			}
			good, bad := Align(p, s.Caption()), Align(p, cap2)
			sumMatch += good.Score
			sumMis += bad.Score
			if good.Score > bad.Score {
				wins++
			} else if testing.Verbose() {
				t.Logf("degraded=%v %q %.3f vs %q (%s) %.3f", degraded, s.Caption(), good.Score, cap2, what, bad.Score)
			}
		}
		rate := float64(wins) / n
		t.Logf("degraded=%v: matching beats mismatching in %.3f of pairs; mean score %.3f matching, %.3f mismatching", degraded, rate, sumMatch/n, sumMis/n)
		if rate < want {
			t.Errorf("degraded=%v: matching caption wins only %.3f of pairs (want >= %.2f)", degraded, rate, want)
		}
		if sumMatch/n < 0.85 {
			t.Errorf("degraded=%v: mean matching score %.3f < 0.85", degraded, sumMatch/n)
		}
	}
}

// TestAlign_subjectPrompts: the subject in a context scores high against
// the prompt naming that context and low against prompts naming another.
func TestAlign_subjectPrompts(t *testing.T) {
	sub := TheSubject()
	r := NewRand(12, 12)
	prompts := []string{"a sks star on the grass", "a sks star floating on the water", "a sks star at night",
		"a sks star in the desert", "a sks star wearing a hat", "a sks star with popcorn in it", "a sks star jumping",
		"a sks star lying down", "a sks star playing with a ball"}
	scenes := []Scene{
		sub.Scene(r, Grass, NoAccessory, NoAction), sub.Scene(r, Water, NoAccessory, NoAction), sub.Scene(r, Night, NoAccessory, NoAction),
		sub.Scene(r, Desert, NoAccessory, NoAction), sub.Scene(r, Plain, Hat, NoAction), sub.Scene(r, Plain, Popcorn, NoAction),
		sub.Scene(r, Plain, NoAccessory, Jumping), sub.Scene(r, Plain, NoAccessory, LyingDown), sub.Scene(r, Plain, NoAccessory, PlayingBall),
	}
	for i, s := range scenes {
		p := view(t, s, nil)
		for j, pr := range prompts {
			got := Align(p, pr).Score
			if i == j && got < 0.9 {
				t.Errorf("%q on its own scene scores %.3f < 0.9", pr, got)
			}
			if i != j && got > 0.75 {
				t.Errorf("%q on the scene of %q scores %.3f > 0.75", pr, prompts[i], got)
			}
		}
	}
	// The plain subject photo against "sks star on the grass": class right,
	// background wrong.
	photo := view(t, sub.Photos(1, 1)[0], nil)
	if got := Align(photo, prompts[0]); math.Abs(got.Score-0.5) > 0.1 || got.Parts["class"] < 0.9 || got.Parts["background"] > 0.1 {
		t.Errorf("plain photo vs %q: %+v, want class ~1, background ~0", prompts[0], got)
	}
}

func TestAlign_noObject(t *testing.T) {
	// A scene of size 0 draws no object: only the grass.
	s := Scene{Background: Grass, Horizon: 16, X: 16}
	p := view(t, s, nil)
	a := Align(p, "a red ball on the grass")
	if a.Parts["class"] != 0 || a.Parts["color"] != 0 || a.Parts["background"] < 0.9 {
		t.Errorf("empty grass scene: %+v", a)
	}
}

// TestFidelity_subjectBeatsOtherStars: the subject in new contexts (other
// backgrounds, accessories, actions, sizes) is closer to its DreamBooth
// photos than base-world stars in the same contexts are, for at least 95%
// of pairs, clean and degraded; and closer on average than each hard
// negative: a solid magenta notched star, a striped whole star, a yellow
// star with magenta stripes.
func TestFidelity_subjectBeatsOtherStars(t *testing.T) {
	sub := TheSubject()
	var photos []*Pixels
	for _, s := range sub.Photos(1, 5) {
		photos = append(photos, view(t, s, nil))
	}
	ref, err := NewSubjectRef(photos)
	if err != nil {
		t.Fatal(err)
	}
	l := *sub.Look
	solid := l
	solid.Name, solid.StripeWidth = "solid magenta notched star", 0
	whole := l
	whole.Name, whole.Notch = "striped whole star", false
	swapped := l
	swapped.Name, swapped.Fill, swapped.Stripe = "yellow star with magenta stripes", l.Stripe, l.Fill
	hard := []*Look{&solid, &whole, &swapped}
	const n = 60
	for _, degraded := range []bool{false, true} {
		var rd *rand.Rand
		if degraded {
			rd = NewRand(13, 13)
		}
		r := NewRand(14, 14)
		wins := 0
		sumSub := 0.0
		sumBase := 0.0
		sumHard := make([]float64, len(hard))
		for i := 0; i < n; i++ {
			s := sub.Scene(r, Backgrounds[i%len(Backgrounds)], Accessories[(i/5)%len(Accessories)], Actions[(i/15)%len(Actions)])
			fs := ref.Fidelity(view(t, s, rd))
			sumSub += fs
			o := s
			o.Look, o.Color = nil, Colors[i%len(Colors)]
			fo := ref.Fidelity(view(t, o, rd))
			sumBase += fo
			if fs > fo {
				wins++
			} else if testing.Verbose() {
				t.Logf("degraded=%v %q: subject %.3f <= %s star %.3f", degraded, s.Caption(), fs, o.Color, fo)
			}
			for k, lk := range hard {
				o.Look = lk
				sumHard[k] += ref.Fidelity(view(t, o, rd))
			}
		}
		rate := float64(wins) / n
		t.Logf("degraded=%v: mean fidelity: subject %.3f, base-world stars %.3f; subject wins %.3f of pairs", degraded, sumSub/n, sumBase/n, rate)
		if rate < 0.95 {
			t.Errorf("degraded=%v: the subject beats base-world stars in only %.3f of pairs", degraded, rate)
		}
		for k, lk := range hard {
			t.Logf("degraded=%v:   %-33s mean fidelity %.3f", degraded, lk.Name, sumHard[k]/n)
			if sumHard[k] >= sumSub {
				t.Errorf("degraded=%v: %s scores %.3f on average, the subject %.3f", degraded, lk.Name, sumHard[k]/n, sumSub/n)
			}
		}
	}
}

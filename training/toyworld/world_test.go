package toyworld

import (
	"bytes"
	"image/png"
	"math"
	"strings"
	"testing"
)

func TestSampleScene_deterministic(t *testing.T) {
	for i := 0; i < 20; i++ {
		a, b := SampleScene(7, i), SampleScene(7, i)
		if a != b {
			t.Fatalf("scene %d differs between draws: %+v vs %+v", i, a, b)
		}
		va, _ := RenderFloat(a, 64)
		vb, _ := RenderFloat(b, 64)
		for k := range va {
			if va[k] != vb[k] {
				t.Fatalf("scene %d renders differently at value %d", i, k)
			}
		}
	}
	if SampleScene(7, 0) == SampleScene(8, 0) {
		t.Error("seeds 7 and 8 give the same first scene")
	}
}

// TestBaseDistribution_rates: the sampled attribute frequencies match the
// distribution (5000 draws, within 2.5 points), and every object stays
// inside the margins.
func TestBaseDistribution_rates(t *testing.T) {
	const n = 5000
	counts := map[string]int{}
	for i := 0; i < n; i++ {
		s := SampleScene(3, i)
		counts["bg "+s.Background.String()]++
		counts["acc "+s.Accessory.String()]++
		counts["act "+s.Action.String()]++
		counts["class "+s.Class.String()]++
		counts["color "+s.Color.String()]++
		lo, hi := s.xRange()
		if s.X < lo || s.X > hi || s.Size < minSize || s.Size > maxSize {
			t.Fatalf("scene %d out of range: %+v", i, s)
		}
	}
	want := map[string]float64{"bg plain": 0.3, "bg grass": 0.175, "bg night": 0.175, "acc none": 0.6, "acc hat": 0.2,
		"act none": 0.55, "act jumping": 0.15, "class star": 0.2, "color purple": 0.2}
	for k, w := range want {
		if got := float64(counts[k]) / n; math.Abs(got-w) > 0.025 {
			t.Errorf("%s: rate %.3f, want %.3f", k, got, w)
		}
	}
}

func TestCaption(t *testing.T) {
	s := Scene{Class: Cat, Color: Orange, Background: Grass, Accessory: Hat, Action: Jumping}
	for _, c := range []struct {
		st   CaptionStyle
		want string
	}{
		{CaptionStyle{}, "an orange cat jumping wearing a hat on the grass"},
		{CaptionStyle{Photo: true}, "a photo of an orange cat jumping wearing a hat on the grass"},
		{CaptionStyle{OmitColor: true}, "a cat jumping wearing a hat on the grass"},
	} {
		if got := s.CaptionWith(c.st); got != c.want {
			t.Errorf("CaptionWith(%+v) = %q, want %q", c.st, got, c.want)
		}
	}
	sub := TheSubject()
	if got := sub.InstancePrompt(); got != "a photo of a sks star" {
		t.Errorf("instance prompt %q", got)
	}
	if got := sub.ClassPrompt(); got != "a photo of a star" {
		t.Errorf("class prompt %q", got)
	}
	sc := Scene{Class: Star, Look: sub.Look, Background: Water, Color: Red}
	if got := sc.Caption(); got != "a sks star floating on the water" {
		t.Errorf("subject caption %q", got)
	}
}

// TestRender_showsTheScene checks pixels of a known scene: the background
// colours at the border, the object's fill at its centre, a dark outline
// at its edge, the hat above it.
func TestRender_showsTheScene(t *testing.T) {
	s := Scene{Class: Box, Color: Blue, Background: Grass, Accessory: Hat, Size: 6, X: 16, Horizon: 16}
	const n = 128 // one pixel per canvas sample
	v, err := RenderFloat(s, n)
	if err != nil {
		t.Fatal(err)
	}
	// at reads the colour at grid point (x, y).
	at := func(x, y float64) RGB {
		i, j := int(x*n/Grid), int(y*n/Grid)
		return RGB{float64(v[j*n+i]), float64(v[n*n+j*n+i]), float64(v[2*n*n+j*n+i])}
	}
	near := func(what string, x, y float64, want RGB) {
		t.Helper()
		if d := dist(at(x, y), want); d > 0.02 {
			t.Errorf("%s at (%g,%g) = %.2f, want %.2f", what, x, y, at(x, y), want)
		}
	}
	near("sky", 0.5, 2, skyRGB)
	near("grass", 31, 30, grassRGB)
	// The box spans rows 14..26 and columns 10..22 (|u|, |v| <= 0.92).
	near("box fill", 16, 20, Blue.RGB())
	near("outline below", 16, 25.9, outlineRGB)
	near("outline left", 10.2, 20, outlineRGB)
	near("grass beside", 9, 20, grassRGB)
	near("lid line", 16, 20-0.45*6, outlineRGB)
	near("hat crown", 16, 11, hatRGB)
	near("sky above the hat", 16, 9.5, skyRGB)
	if _, err := RenderFloat(s, 48); err == nil {
		t.Error("size 48 accepted")
	}
	img, err := Render(s, 64)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil || img.Bounds().Dx() != 64 {
		t.Fatalf("png: %v, %v", err, img.Bounds())
	}
}

func TestSubjectPhotos_plainAndVaried(t *testing.T) {
	sub := TheSubject()
	photos := sub.Photos(1, 5)
	for i, s := range photos {
		if s.Background != Plain || s.Accessory != NoAccessory || s.Action != NoAction || s.Look != sub.Look || s.Class != Star {
			t.Errorf("photo %d is not a plain photo of the subject: %+v", i, s)
		}
	}
	if photos[0].X == photos[1].X || photos[0].Size == photos[1].Size {
		t.Error("photos do not vary")
	}
	// No base-world scene has the subject's look or its magenta.
	for i := 0; i < 200; i++ {
		s := SampleScene(1, i)
		a := Analyze(view(t, s, nil))
		counts, total := a.fillCounts()
		if s.Look != nil || float64(counts[lMagenta]) > 0.05*float64(total) {
			t.Fatalf("base scene %d %q shows magenta (%d of %d fill pixels)", i, s.Caption(), counts[lMagenta], total)
		}
	}
}

// TestVocab: every word of every caption is one token of the toy
// vocabulary; identifiers are single tokens; unknown words fall back to
// letters; the special tokens come last.
func TestVocab(t *testing.T) {
	tok, err := NewTokenizer()
	if err != nil {
		t.Fatal(err)
	}
	ids := vocabMap()
	for _, w := range vocabWords() {
		got := tok.Encode(w)
		if len(got) != 1 || got[0] != ids[w+"</w>"] {
			t.Errorf("%q encodes to %v, want the single token %d", w, got, ids[w+"</w>"])
		}
	}
	if got := tok.Encode("dog"); len(got) < 2 {
		t.Errorf("unknown word dog encodes to %v, want letter pieces", got)
	}
	if startID() != int32(VocabSize()-2) || endID() != int32(VocabSize()-1) {
		t.Errorf("special tokens %d, %d of %d", startID(), endID(), VocabSize())
	}
	enc, _ := tok.EncodeSD("a photo of a sks star wearing a hat")
	if enc[0] != startID() || enc[10] != endID() || enc[9] != ids["hat</w>"] {
		t.Errorf("EncodeSD gives %v", enc[:12])
	}
	if n := VocabSize(); n > 400 {
		t.Errorf("vocabulary of %d tokens; expected a small one", n)
	}
	if !strings.Contains(mergesText(), "#version") {
		t.Error("merges.txt lacks its header")
	}
}

package toyworld

import (
	"math"
	"regexp"
	"sort"
	"strings"
	"sync"
)

// Prompt is what a prompt names. Attributes the prompt leaves unsaid
// are -1 (AnyClass, AnyColor, ...).
type Prompt struct {
	Class      Class
	Color      Color
	Background Background
	Accessory  Accessory
	Action     Action
	// Token is an identifier word before the class noun ("sks"), if any.
	Token string
}

// Unnamed values of Prompt's attributes.
const (
	AnyClass      Class      = -1
	AnyColor      Color      = -1
	AnyBackground Background = -1
	AnyAccessory  Accessory  = -1
	AnyAction     Action     = -1
)

var nonWord = regexp.MustCompile(`[^a-z]+`)

// ParsePrompt reads the attributes a prompt names, by the world's
// phrases: "floating on the water" (or "on the water"), "on the grass",
// "at night", "in the desert", "on a plain background"; "wearing a hat",
// "with popcorn"; "jumping", "lying down", "playing with a ball"; a colour
// word; the first class noun outside those phrases; and the word before
// the noun when it is one of Identifiers.
func ParsePrompt(text string) Prompt {
	p := Prompt{Class: AnyClass, Color: AnyColor, Background: AnyBackground, Accessory: AnyAccessory, Action: AnyAction}
	t := " " + strings.Join(strings.Fields(nonWord.ReplaceAllString(strings.ToLower(text), " ")), " ") + " "
	cut := func(phrases ...string) bool {
		found := false
		for _, ph := range phrases {
			if strings.Contains(t, " "+ph+" ") {
				t = strings.Replace(t, " "+ph+" ", " ", 1)
				found = true
			}
		}
		return found
	}
	switch {
	case cut("playing with a ball", "playing with the ball", "playing"):
		p.Action = PlayingBall
	case cut("jumping"):
		p.Action = Jumping
	case cut("lying down", "lying"):
		p.Action = LyingDown
	}
	switch {
	case cut("floating on the water", "on the water", "in the water", "water"):
		p.Background = Water
	case cut("on the grass", "grass"):
		p.Background = Grass
	case cut("at night", "night"):
		p.Background = Night
	case cut("in the desert", "desert"):
		p.Background = Desert
	case cut("on a plain background", "plain background"):
		p.Background = Plain
	}
	switch {
	case cut("wearing a hat", "with a hat", "hat"):
		p.Accessory = Hat
	case cut("with popcorn in it", "with popcorn", "popcorn"):
		p.Accessory = Popcorn
	}
	words := strings.Fields(t)
	for i, w := range words {
		for _, c := range Classes {
			if w == c.String() && p.Class == AnyClass {
				p.Class = c
				if i > 0 {
					for _, id := range Identifiers {
						if words[i-1] == id {
							p.Token = id
						}
					}
				}
			}
		}
		for _, c := range Colors {
			if w == c.String() && p.Color == AnyColor {
				p.Color = c
			}
		}
	}
	return p
}

// Alignment is the prompt-alignment score of one image: the mean, over
// the attributes the prompt names, of the probability that the pixels show
// that attribute. It plays ImageReward's role in the toy world.
type Alignment struct {
	Score float64
	// Parts maps each named attribute ("class", "color", "background",
	// "accessory", "action") to its probability.
	Parts map[string]float64
}

// Names returns Parts' keys in a fixed order.
func (a Alignment) Names() []string {
	var out []string
	for k := range a.Parts {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Align scores image p against prompt. A prompt that names nothing of the
// world scores 0.
func Align(p *Pixels, prompt string) Alignment {
	return AlignParsed(Analyze(p), ParsePrompt(prompt))
}

// AlignParsed scores an analysed image against a parsed prompt.
func AlignParsed(a *Analysis, pr Prompt) Alignment {
	out := Alignment{Parts: map[string]float64{}}
	if pr.Class != AnyClass {
		out.Parts["class"] = a.ClassProb(pr.Class)
	}
	if pr.Color != AnyColor {
		out.Parts["color"] = a.ColorProb(pr.Color)
	}
	if pr.Background != AnyBackground {
		out.Parts["background"] = a.BG[pr.Background]
	}
	if pr.Accessory != AnyAccessory {
		out.Parts["accessory"] = a.AccessoryProb(pr.Accessory)
	}
	if pr.Action != AnyAction {
		out.Parts["action"] = a.ActionProb(pr.Action)
	}
	for _, k := range out.Names() { // a fixed order: the same sum every time
		out.Score += out.Parts[k]
	}
	if len(out.Parts) > 0 {
		out.Score /= float64(len(out.Parts))
	}
	return out
}

func sigmoid(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

// classTemperature turns squared silhouette distances (summed over the
// cells) into probabilities.
const classTemperature = 0.5

// protoKey selects a set of class prototypes: the setting (0 on land by
// day, 1 at night, where the dark outline disappears into the sky, 2 cut
// by the water), the accessory, whether the object lies down.
type protoKey struct {
	setting int
	acc     Accessory
	lying   bool
}

// setting returns the protoKey setting of an analysed image.
func (a *Analysis) setting() int {
	switch {
	case a.floating():
		return 2
	case a.Background() == Night:
		return 1
	}
	return 0
}

// classPrototypes are the mean silhouettes of each class for every
// protoKey, from rendered scenes (accessories and the water hide parts of
// the object, lying down changes the outline's share).
var classPrototypes = sync.OnceValue(func() map[protoKey][5][]float64 {
	out := map[protoKey][5][]float64{}
	r := NewRand(0x70726f746f, 0)
	for setting := 0; setting < 3; setting++ {
		for _, acc := range Accessories {
			for _, lying := range []bool{false, true} {
				var set [5][]float64
				for _, c := range Classes {
					acc0 := make([]float64, 2*shapeCells*shapeCells)
					const n = 16
					for i := 0; i < n; i++ {
						s := Scene{Class: c, Color: Colors[i%len(Colors)], Accessory: acc,
							Size: minSize + (maxSize-minSize)*(float64(i)+r.Float64())/n, Horizon: 15 + 3*r.Float64()}
						if lying {
							s.Action = LyingDown
						}
						switch setting {
						case 0:
							s.Background = []Background{Plain, Grass, Desert}[i%3]
						case 1:
							s.Background = Night
						case 2:
							s.Background = Water
						}
						s.X = s.randomX(r)
						// Half sharp, half blurred as a small model draws them.
						sigma := 0.0
						if i%2 == 1 {
							sigma = 1.2
						}
						for k, v := range analyzeBlurred(s, sigma).silhouette() {
							acc0[k] += v / n
						}
					}
					set[c] = acc0
				}
				out[protoKey{setting, acc, lying}] = set
			}
		}
	}
	return out
})

// analyzeScene renders s at 32x32 and analyses it.
func analyzeScene(s Scene) *Analysis {
	v, _ := RenderFloat(s, Grid)
	p, _ := PixelsFromFloat(v, Grid)
	return Analyze(p)
}

// analyzeBlurred renders s at 64x64, blurs it by sigma pixels (none when
// 0) and analyses it.
func analyzeBlurred(s Scene, sigma float64) *Analysis {
	v, _ := RenderFloat(s, 2*Grid)
	if sigma > 0 {
		v = Blur(v, 2*Grid, sigma)
	}
	p, _ := PixelsFromFloat(v, 2*Grid)
	return Analyze(p)
}

// ClassProbs returns the probability of each class (all 0 without an
// object): a softmax over the squared distances between the object's
// normalised silhouette and each class's mean silhouette among scenes
// like this one (by day, at night or cut by the water, with the accessory
// and the posture the image most likely shows).
func (a *Analysis) ClassProbs() [5]float64 {
	var out [5]float64
	if a.Area == 0 {
		return out
	}
	key := protoKey{setting: a.setting(), acc: NoAccessory, lying: a.ActionProb(LyingDown) > 0.5}
	for _, acc := range []Accessory{Hat, Popcorn} {
		if a.AccessoryProb(acc) > 0.5 {
			key.acc = acc
		}
	}
	protos := classPrototypes()[key]
	sil := a.silhouette()
	var logits [5]float64
	for c, pr := range protos {
		d := 0.0
		for k := range sil {
			d += (sil[k] - pr[k]) * (sil[k] - pr[k])
		}
		logits[c] = -d / classTemperature
	}
	return softmax5(logits)
}

// ClassProb is the probability that the object is of class c.
func (a *Analysis) ClassProb(c Class) float64 { return a.ClassProbs()[c] }

// ColorProb is the share of the object's inner fill pixels that have colour
// c (0 without an object).
func (a *Analysis) ColorProb(c Color) float64 {
	counts, total := a.fillCounts()
	if total == 0 {
		return 0
	}
	return float64(counts[lColor0+label(c)]) / float64(total)
}

// Accessory detection: pixels of the accessory's colour above the object's
// top row.
const (
	hatPixels     = 6
	popcornPixels = 5
	toyPixels     = 5
)

// AccessoryProb is the probability that the object carries acc
// (NoAccessory: that it carries neither).
func (a *Analysis) AccessoryProb(acc Accessory) float64 {
	if a.Area == 0 {
		return 0
	}
	hat := sigmoid((float64(a.count(lHat, a.top-7, a.top-1)) - hatPixels) / 1.5)
	pop := sigmoid((float64(a.count(lPopcorn, a.top-6, a.top+1)) - popcornPixels) / 1.5)
	switch acc {
	case Hat:
		return hat
	case Popcorn:
		return pop
	}
	return (1 - hat) * (1 - pop)
}

// Action detection thresholds (rows, and width/height ratios).
const (
	jumpRowLand  = 22.5 // a body ending above this row is off the ground
	jumpRowWater = 18.5
	lyingAspect  = 1.6 // wider than high by this much: lying down
	lyingFloat   = 2.2 // the same for an object cut by the water
)

// ActionProb is the probability that the object does act (NoAction: none
// of the others).
func (a *Analysis) ActionProb(act Action) float64 {
	if a.Area == 0 {
		return 0
	}
	thr := jumpRowLand
	if a.Background() == Water {
		thr = jumpRowWater
	}
	jump := sigmoid((thr - float64(a.bottom)) / 0.7)
	aspect := float64(a.rgt-a.left+1) / float64(a.bottom-a.top+1)
	lthr := lyingAspect
	if a.floating() {
		lthr = lyingFloat
	}
	lying := sigmoid((aspect - lthr) / 0.15)
	play := sigmoid((float64(a.toyCount()) - toyPixels) / 1.5)
	switch act {
	case Jumping:
		return jump
	case LyingDown:
		return lying
	case PlayingBall:
		return play
	}
	return (1 - jump) * (1 - lying) * (1 - play)
}

// toyCount counts toy-coloured pixels beside the object (outside its
// columns, where the toy ball lies), in the lower part of the image.
func (a *Analysis) toyCount() int {
	n := 0
	for y := 12; y < Grid; y++ {
		for x := 0; x < Grid; x++ {
			if (x < a.left-1 || x > a.rgt+1) && a.labels[y*Grid+x] == lToy {
				n++
			}
		}
	}
	return n
}

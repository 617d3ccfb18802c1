package toyworld

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

// Class is the object's kind; its name is the caption's noun.
type Class int

const (
	Ball Class = iota
	Box
	Star
	Cup
	Cat
)

// Classes lists every class.
var Classes = []Class{Ball, Box, Star, Cup, Cat}

func (c Class) String() string {
	switch c {
	case Ball:
		return "ball"
	case Box:
		return "box"
	case Star:
		return "star"
	case Cup:
		return "cup"
	case Cat:
		return "cat"
	}
	return fmt.Sprintf("class(%d)", int(c))
}

// Color is an object colour of the base world.
type Color int

const (
	Red Color = iota
	Orange
	Yellow
	Blue
	Purple
)

// Colors lists every object colour.
var Colors = []Color{Red, Orange, Yellow, Blue, Purple}

func (c Color) String() string {
	switch c {
	case Red:
		return "red"
	case Orange:
		return "orange"
	case Yellow:
		return "yellow"
	case Blue:
		return "blue"
	case Purple:
		return "purple"
	}
	return fmt.Sprintf("color(%d)", int(c))
}

// RGB is a linear colour with channels in [0, 1].
type RGB [3]float64

// RGB returns the colour's fill.
func (c Color) RGB() RGB { return colorRGB[c] }

var colorRGB = map[Color]RGB{
	Red:    {0.86, 0.12, 0.12},
	Orange: {0.98, 0.55, 0.08},
	Yellow: {0.96, 0.86, 0.12},
	Blue:   {0.16, 0.30, 0.90},
	Purple: {0.55, 0.20, 0.75},
}

// Background is the scene's setting.
type Background int

const (
	Plain Background = iota
	Grass
	Water
	Night
	Desert
)

// Backgrounds lists every background.
var Backgrounds = []Background{Plain, Grass, Water, Night, Desert}

// Phrase is the caption's words for the background ("" for Plain).
func (b Background) Phrase() string {
	switch b {
	case Grass:
		return "on the grass"
	case Water:
		return "floating on the water"
	case Night:
		return "at night"
	case Desert:
		return "in the desert"
	}
	return ""
}

func (b Background) String() string {
	switch b {
	case Plain:
		return "plain"
	case Grass:
		return "grass"
	case Water:
		return "water"
	case Night:
		return "night"
	case Desert:
		return "desert"
	}
	return fmt.Sprintf("background(%d)", int(b))
}

// Accessory is something on top of the object.
type Accessory int

const (
	NoAccessory Accessory = iota
	Hat                   // a light-green top hat on the object's top
	Popcorn               // a mound of popcorn on the object's top
)

// Accessories lists every accessory, NoAccessory included.
var Accessories = []Accessory{NoAccessory, Hat, Popcorn}

// Phrase is the caption's words for the accessory.
func (a Accessory) Phrase() string {
	switch a {
	case Hat:
		return "wearing a hat"
	case Popcorn:
		return "with popcorn in it"
	}
	return ""
}

func (a Accessory) String() string {
	switch a {
	case NoAccessory:
		return "none"
	case Hat:
		return "hat"
	case Popcorn:
		return "popcorn"
	}
	return fmt.Sprintf("accessory(%d)", int(a))
}

// Action is what the object does.
type Action int

const (
	NoAction    Action = iota
	Jumping            // raised above the ground, its shadow below
	LyingDown          // flattened (0.5x high, 1.5x wide) on the ground
	PlayingBall        // a small cyan ball beside it on the ground
)

// Actions lists every action, NoAction included.
var Actions = []Action{NoAction, Jumping, LyingDown, PlayingBall}

// Phrase is the caption's words for the action.
func (a Action) Phrase() string {
	switch a {
	case Jumping:
		return "jumping"
	case LyingDown:
		return "lying down"
	case PlayingBall:
		return "playing with a ball"
	}
	return ""
}

func (a Action) String() string {
	switch a {
	case NoAction:
		return "none"
	case Jumping:
		return "jumping"
	case LyingDown:
		return "lying down"
	case PlayingBall:
		return "playing with a ball"
	}
	return fmt.Sprintf("action(%d)", int(a))
}

// Look is a particular instance's appearance, overriding the plain
// single-colour look of its class: a fill with horizontal stripes of a
// second colour, and for stars optionally a notch (the upper-right arm cut
// short). Token is the identifier word that names the instance in
// captions ("a photo of a sks star").
type Look struct {
	Name        string
	Token       string
	Fill        RGB
	Stripe      RGB
	StripeWidth float64 // grid pixels of each stripe; 0: no stripes
	// StripePeriod is the distance between stripes (StripeWidth of Stripe,
	// then StripePeriod - StripeWidth of Fill, from the object's top).
	StripePeriod float64
	Notch        bool
}

// Scene is the ground truth of one image. Coordinates are in 32x32 grid
// units (y down).
type Scene struct {
	Class      Class
	Color      Color
	Background Background
	Accessory  Accessory
	Action     Action
	// Look, when set, replaces the class's look in Color (the DreamBooth
	// subject, or another special instance).
	Look *Look
	// Size is the object's half-size before the action's squash (4.5..6).
	Size float64
	// X is the object's centre.
	X float64
	// Horizon is the row where sky meets the ground (Grass, Night, Desert).
	Horizon float64
	// Shade shifts the background's brightness (about ±0.04).
	Shade float64
	// ToyLeft puts PlayingBall's ball left of the object.
	ToyLeft bool
}

// Geometry constants of the 32x32 grid.
const (
	Grid          = 32
	groundY       = 26.0 // object bottom when standing
	waterSurface  = 21.0 // Water: the surface row
	waterSink     = 0.25 // Water: the share of a floating object's height under the surface
	jumpHeight    = 7.0  // Jumping raises the bottom by this much
	waterJumpY    = 16.5 // Water: a jumping object's bottom
	toyRadius     = 2.8
	toyGap        = 2.5 // between the object's outline and the toy ball
	hatHeight     = 3.9 // from the object's top to the hat's top
	minSize       = 4.5
	maxSize       = 6.0
	margin        = 2.5 // nothing is drawn closer to the border than this
	lyingStretchX = 1.5
	lyingSquashY  = 0.5
)

// halfExtents returns the object's half width and half height.
func (s Scene) halfExtents() (sx, sy float64) {
	if s.Action == LyingDown {
		return s.Size * lyingStretchX, s.Size * lyingSquashY
	}
	return s.Size, s.Size
}

// bottom returns the row of the object's bottom edge.
func (s Scene) bottom() float64 {
	switch {
	case s.Background == Water && s.Action == Jumping:
		return waterJumpY
	case s.Background == Water:
		_, sy := s.halfExtents()
		return waterSurface + waterSink*2*sy
	case s.Action == Jumping:
		return groundY - jumpHeight
	}
	return groundY
}

// toyCenter returns PlayingBall's ball centre.
func (s Scene) toyCenter() (x, y float64) {
	sx, _ := s.halfExtents()
	d := sx + 0.75 + toyGap + toyRadius
	if s.ToyLeft {
		d = -d
	}
	y = groundY - toyRadius
	if s.Background == Water {
		y = waterSurface + 0.3
	}
	return s.X + d, y
}

// xRange is the range of object centres that keeps the object (and the
// toy ball) inside the margins.
func (s Scene) xRange() (lo, hi float64) {
	sx, _ := s.halfExtents()
	lo, hi = margin+sx+1, Grid-margin-sx-1
	if s.Action == PlayingBall {
		extra := toyGap + 2*toyRadius
		if s.ToyLeft {
			lo += extra
		} else {
			hi -= extra
		}
	}
	return lo, hi
}

// Distribution is the sampling distribution of the base training set.
// Probabilities of the non-default values; the rest goes to Plain,
// NoAccessory, NoAction.
type Distribution struct {
	PBackground float64 // each of Grass, Water, Night, Desert
	PAccessory  float64 // each of Hat, Popcorn
	PAction     float64 // each of Jumping, LyingDown, PlayingBall
	// Classes and Colors restrict the draw (all when empty).
	Classes []Class
	Colors  []Color
}

// BaseDistribution is the base world's: 30% plain backgrounds, 60% without
// accessory, 55% without action.
func BaseDistribution() Distribution {
	return Distribution{PBackground: 0.175, PAccessory: 0.2, PAction: 0.15}
}

// NewRand returns the generator of stream stream under seed (PCG).
func NewRand(seed, stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, stream^0x5eed5eed5eed5eed))
}

// pick returns index i >= 1 with probability p each, else 0.
func pick(r *rand.Rand, n int, p float64) int {
	u := r.Float64()
	for i := 1; i < n; i++ {
		if u < float64(i)*p {
			return i
		}
	}
	return 0
}

// Sample draws a scene from d.
func (d Distribution) Sample(r *rand.Rand) Scene {
	classes, colors := d.Classes, d.Colors
	if len(classes) == 0 {
		classes = Classes
	}
	if len(colors) == 0 {
		colors = Colors
	}
	s := Scene{
		Class:      classes[r.IntN(len(classes))],
		Color:      colors[r.IntN(len(colors))],
		Background: Backgrounds[pick(r, len(Backgrounds), d.PBackground)],
		Accessory:  Accessories[pick(r, len(Accessories), d.PAccessory)],
		Action:     Actions[pick(r, len(Actions), d.PAction)],
		Size:       minSize + (maxSize-minSize)*r.Float64(),
		Horizon:    15 + 3*r.Float64(),
		Shade:      0.08 * (r.Float64() - 0.5),
		ToyLeft:    r.IntN(2) == 0,
	}
	s.X = s.randomX(r)
	return s
}

func (s Scene) randomX(r *rand.Rand) float64 {
	lo, hi := s.xRange()
	return lo + (hi-lo)*r.Float64()
}

// SampleScene is scene i of the base world under seed.
func SampleScene(seed uint64, i int) Scene {
	return BaseDistribution().Sample(NewRand(seed, uint64(i)))
}

// Noun is the caption's words for the object: "[colour] class", or
// "token class" for a scene with an identified Look.
func (s Scene) noun(withColor bool) string {
	if s.Look != nil && s.Look.Token != "" {
		return s.Look.Token + " " + s.Class.String()
	}
	if withColor && s.Look == nil {
		return s.Color.String() + " " + s.Class.String()
	}
	return s.Class.String()
}

// CaptionStyle varies a caption's wording.
type CaptionStyle struct {
	Photo     bool // "a photo of a ..." instead of "a ..."
	OmitColor bool // leave the colour unsaid
}

// Caption is the scene's canonical caption, naming every attribute:
// "a red cat jumping wearing a hat on the grass".
func (s Scene) Caption() string { return s.CaptionWith(CaptionStyle{}) }

// CaptionWith writes the caption in a style: article, [colour or
// identifier] class, then the action, the accessory and the background
// phrases that apply.
func (s Scene) CaptionWith(st CaptionStyle) string {
	noun := s.noun(!st.OmitColor)
	art := "a"
	if strings.IndexByte("aeiou", noun[0]) >= 0 {
		art = "an"
	}
	parts := []string{art}
	if st.Photo {
		parts = []string{"a photo of " + art}
	}
	parts = append(parts, noun)
	for _, p := range []string{s.Action.Phrase(), s.Accessory.Phrase(), s.Background.Phrase()} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, " ")
}

// RandomCaption is the caption the base trainer uses: half the time "a
// photo of a ...", and the colour left out one time in five, so that the
// model also learns prompts that leave attributes open.
func (s Scene) RandomCaption(r *rand.Rand) string {
	return s.CaptionWith(CaptionStyle{Photo: r.IntN(2) == 0, OmitColor: r.IntN(5) == 0})
}

// Package toyworld is a small world in which InstructBooth's whole method
// (DreamBooth, then DDPO alignment, then evaluation) runs end to end on a
// laptop without a GPU, with an effect that can be measured.
//
// # The world
//
// A Scene is one object of a Class (ball, box, star, cup, cat) in a Color
// (red, orange, yellow, blue, purple) on a Background (plain, grass,
// floating on the water, at night, in the desert), with an Accessory (a
// light-green top hat, a mound of popcorn) and an Action (jumping: raised
// with a shadow below; lying down: half as high, 1.5x as wide; playing
// with a ball: a small cyan ball beside it), plus a size, a position and
// small background variations. Everything is drawn on a 32x32 grid with big
// shapes and dark outlines, in colours chosen to stay apart from every
// background and from each other's blends (the accessories and the toy
// have no outline, so they never merge with the object), and rendered at
// 32, 64 or 128 pixels by averaging a 4x-supersampled canvas. Scenes are a
// pure function of a seed (SampleScene); captions read like SD prompts
// ("a photo of an orange cat jumping wearing a hat on the grass"), with the
// colour left out one time in five. BaseDistribution is the training
// distribution: 30% plain backgrounds, 60% without accessory, 55% without
// action.
//
// TheSubject is the DreamBooth subject: a magenta star with yellow stripes
// and its upper-right arm cut short, called "sks star"; no base scene has
// its look or its magenta. Subject.Photos gives the DreamBooth inputs
// (plain backgrounds, no accessory, no action).
//
// # Scores
//
// Both scores read an image at 32x32. Analyze estimates each row's
// background from the border pixels, labels every pixel by the palette
// colour whose blend with that background it is nearest to, and takes the
// largest connected set of object-like pixels as the object.
//
// Align plays ImageReward's role: ParsePrompt finds the attributes a prompt
// names, and the score is the mean, over those attributes, of the
// probability that the pixels show them (class: softmax over distances
// between the object's normalised silhouette with its inner marks and
// per-class mean silhouettes of rendered scenes; colour: share of the
// object's inner pixels; background: softmax over the distance of the
// border colours to each background; accessory and toy: pixels of their
// colours above or beside the object; jumping and lying down: the object's
// bottom row and aspect). On random scenes the right value of every
// attribute is the most probable one for at least 98% of clean renders and
// 95% of renders degraded like a small model's output (blur, colour shift,
// noise), and an image's own caption beats a one-attribute change for
// more than 99% of pairs.
//
// SubjectRef.Fidelity plays DINO's role: the mean cosine similarity
// between the object's appearance features (mean and spread of its
// colours, colour change between vertical and horizontal neighbours, its
// normalised silhouette) and those of the subject's photos, taken around
// the mean feature of the base world.
//
// # The base model
//
// The model is SD 1.x's own code with small configurations
// (DefaultModelConfig): a CLIPTextModel (width 64, 2 layers, 4 heads, over
// a 160-token BPE vocabulary holding every caption word as one token plus
// the identifiers "sks", "zwx", "qrv") and a UNet2DConditionModel (32/64
// channels, one resnet per level, cross-attention at the 4x4 level and in
// the mid block) on 8x8x48 latents. In place of the VAE the model has a
// fixed pixel codec (sd.NewPixelCodec, the issue's "fixed invertible
// transform"): each 4x4 patch of a 32x32 image becomes 48 latent
// channels, scaled to unit variance over world images. Reconstructions
// are exact and nothing has to be trained for them; the first toy models
// used a trained AutoencoderKL (VAEConfig64, 64x64 images, factor 8), which
// even on an H200 trained at only 2-4 steps/s and capped the images'
// alignment (reconstruction PSNR 17.6-23.6 dB); it remains available as
// "ib toyworld train --vae kl". Model.Save writes a diffusers folder that
// sd.Load reads and generate.Generate samples from at Width = Height =
// 32 like any SD 1.x checkpoint. Train trains the text encoder and U-Net
// with SD's epsilon-prediction loss; it reports progress, stops cleanly at
// a time limit, checkpoints and resumes.
//
// The U-Net was sized by BenchmarkUNet on lavapipe (2 cores): attention at
// the 8x8 level cost 30% of a training step, so it is left out there.
// BuiltinModel extracts the committed model (training/toyworld/base,
// embedded in the binaries) for the demo (training/toyworld/demo) and the
// app; base/TRAINING.md gives the command that retrains it and its time.
package toyworld

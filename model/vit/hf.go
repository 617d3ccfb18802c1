package vit

import (
	"strings"
)

// HFTable converts transformers' ViTModel keys (facebook/dino-vits16 and
// other converted timm/DINO checkpoints; a "vit." prefix, as in
// ViTForImageClassification, is accepted) to the timm keys, as
// transformers' convert_dino_to_pytorch.py maps them the other way:
//
//	embeddings.cls_token                        cls_token
//	embeddings.position_embeddings              pos_embed
//	embeddings.patch_embeddings.projection.*    patch_embed.proj.*
//	encoder.layer.N.layernorm_before.*          blocks.N.norm1.*
//	encoder.layer.N.attention.attention.query.* blocks.N.attn.qkv.* rows 0:D
//	encoder.layer.N.attention.attention.key.*   blocks.N.attn.qkv.* rows D:2D
//	encoder.layer.N.attention.attention.value.* blocks.N.attn.qkv.* rows 2D:3D
//	encoder.layer.N.attention.output.dense.*    blocks.N.attn.proj.*
//	encoder.layer.N.layernorm_after.*           blocks.N.norm2.*
//	encoder.layer.N.intermediate.dense.*        blocks.N.mlp.fc1.*
//	encoder.layer.N.output.dense.*              blocks.N.mlp.fc2.*
//	layernorm.*                                 norm.*
//
// The pooler and classifier are skipped.
func HFTable(k string) (Target, bool) {
	k = strings.TrimPrefix(k, "vit.")
	switch {
	case k == "embeddings.cls_token":
		return Target{Key: "cls_token"}, true
	case k == "embeddings.position_embeddings":
		return Target{Key: "pos_embed"}, true
	case strings.HasPrefix(k, "embeddings.patch_embeddings.projection."):
		return Target{Key: "patch_embed.proj." + strings.TrimPrefix(k, "embeddings.patch_embeddings.projection.")}, true
	case strings.HasPrefix(k, "layernorm."):
		return Target{Key: "norm." + strings.TrimPrefix(k, "layernorm.")}, true
	case strings.HasPrefix(k, "encoder.layer."):
		rest := strings.TrimPrefix(k, "encoder.layer.")
		n, sub, ok := strings.Cut(rest, ".")
		if !ok {
			return Target{}, false
		}
		blk := "blocks." + n + "."
		for _, r := range []struct {
			from, to string
			part     int
		}{
			{"layernorm_before.", "norm1.", -1},
			{"attention.attention.query.", "attn.qkv.", 0},
			{"attention.attention.key.", "attn.qkv.", 1},
			{"attention.attention.value.", "attn.qkv.", 2},
			{"attention.output.dense.", "attn.proj.", -1},
			{"layernorm_after.", "norm2.", -1},
			{"intermediate.dense.", "mlp.fc1.", -1},
			{"output.dense.", "mlp.fc2.", -1},
		} {
			if strings.HasPrefix(sub, r.from) {
				t := Target{Key: blk + r.to + strings.TrimPrefix(sub, r.from)}
				if r.part >= 0 {
					t.Part, t.Parts = r.part, 3
				}
				return t, true
			}
		}
	}
	return Target{}, false
}

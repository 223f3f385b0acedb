"""Rebalance FFHQ_512.zip by camera yaw: images of rare yaw bins are repeated.

    python rebalance_ffhq_dataset.py FFHQ_512.zip FFHQ_512_rebalanced.zip [--replicas=num_replicas.json]

num_replicas.json maps the index of an entry of the input's dataset.json labels (as a string) to a
replica count. Each entry becomes that many copies named with '_<replica:02d>' inserted before every
'.' of the name (00000/img00000001.png -> 00000/img00000001_00.png), all with the original label.
The output is an uncompressed zip, written under a temporary name and renamed when complete.
"""

import argparse
import hashlib
import json
import os
import sys
import zipfile

from tqdm import tqdm

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from mirror_dataset import expand_path, fail, read_json  # noqa: E402

INPUT_JSON_MD5 = 'a5893550587656894051685f1a5930ce'
OUTPUT_JSON_MD5 = 'bae1b0b52267670f1735fef9092b5c11'

def replica_name(name, replica):
    return name.replace('.', f'_{replica:02d}.')

def rebalance(inzip, outzip, replicas):
    try:
        src = zipfile.ZipFile(inzip)
    except (OSError, zipfile.BadZipFile) as exc:
        fail(f'{inzip}: cannot read zip file ({exc})')
    with src:
        if 'dataset.json' not in src.namelist():
            fail(f'{inzip}: no dataset.json')
        meta_bytes = src.read('dataset.json')
        md5 = hashlib.md5(meta_bytes).hexdigest()
        if md5 != INPUT_JSON_MD5:
            print(f'Warning: md5 of {inzip}/dataset.json is {md5}, the published FFHQ_512.zip has {INPUT_JSON_MD5}', file=sys.stderr)
        labels = json.loads(meta_bytes)['labels']
        for key, count in replicas.items():
            if not (key.isdigit() and int(key) < len(labels)) or not (isinstance(count, int) and count >= 1):
                fail(f'replica table entry {key!r}: {count!r} does not fit the {len(labels)} labels of {inzip}')

        tmp = f'{outzip}.incomplete-{os.getpid()}'
        out_labels = []
        try:
            with zipfile.ZipFile(tmp, 'w', compression=zipfile.ZIP_STORED) as dst:
                for key, count in tqdm(replicas.items(), desc='Rebalancing', unit='img'):
                    name, label = labels[int(key)]
                    data = src.read(name)
                    for replica in range(count):
                        dst.writestr(replica_name(name, replica), data)
                        out_labels.append([replica_name(name, replica), label])
                out_json = json.dumps({'labels': out_labels})
                dst.writestr('dataset.json', out_json)
            os.replace(tmp, outzip)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    md5 = hashlib.md5(out_json.encode()).hexdigest()
    print(f'Wrote {len(out_labels)} image(s) to {outzip}; md5 of its dataset.json: {md5} (published: {OUTPUT_JSON_MD5})')

def main(argv=None):
    parser = argparse.ArgumentParser(description='Rebalance FFHQ_512.zip by camera yaw.')
    parser.add_argument('inzip', type=expand_path, help='FFHQ_512.zip')
    parser.add_argument('outzip', type=expand_path, help='output zip')
    parser.add_argument('--replicas', type=expand_path, default=os.path.join(os.path.dirname(os.path.abspath(__file__)), 'num_replicas.json'),
                        help='replica table (default: num_replicas.json next to this script)')
    args = parser.parse_args(argv)
    if not os.path.isfile(args.replicas):
        fail(f'{args.replicas}: no such file; the replica table (num_replicas.json) is published with EG3D\'s '
             'dataset_preprocessing/rebalance_ffhq; put it next to this script or pass --replicas=PATH')
    if os.path.exists(args.outzip):
        fail(f'{args.outzip}: destination already exists')
    replicas = read_json(args.replicas)
    if not isinstance(replicas, dict):
        fail(f'{args.replicas}: expected {{"<label index>": replica count, ...}}')
    rebalance(args.inzip, args.outzip, replicas)

if __name__ == '__main__':
    main()

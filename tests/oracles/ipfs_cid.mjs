// The oracle for stacbatch's CIDs: ipfs-unixfs-importer (the UnixFS importer of js-ipfs and Helia), installed by
// tests/peers/install.sh. usage: node ipfs_cid.mjs OPTIONS_JSON FILE...   prints one CID per file.
// OPTIONS_JSON: {"profile": "unixfs-v0-2015"} or {"cidVersion": 1, "rawLeaves": true, "chunkSize": N, "width": N}
import { importer } from 'ipfs-unixfs-importer'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced } from 'ipfs-unixfs-importer/layout'
import fs from 'node:fs'

const [optionsText, ...files] = process.argv.slice(2)
const given = JSON.parse(optionsText)
const options = {}
if (given.profile) options.profile = given.profile
if (given.cidVersion !== undefined) options.cidVersion = given.cidVersion
if (given.rawLeaves !== undefined) options.rawLeaves = given.rawLeaves
if (given.chunkSize) options.chunker = fixedSize({ chunkSize: given.chunkSize })
if (given.width) options.layout = balanced({ maxChildrenPerNode: given.width })
const blockstore = { put: async (cid) => cid }
for (const file of files) {
  let last
  for await (const entry of importer([{ content: fs.createReadStream(file) }], blockstore, options)) last = entry
  console.log(last.cid.toString())
}

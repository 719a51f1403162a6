cd REPO
date -u +"start %FT%TZ"
source experiments/machine_info.sh
/usr/bin/time -v python -m segjax.main --config configs/segnet_camvid.py:../shared/data/camvid --workdir runs/segnet_camvid_camvid 
date -u +"end %FT%TZ"
python -m segjax.evaluate --workdir runs/segnet_camvid_camvid --split test \
  --output eval_test.json

# -*- coding: utf-8 -*-
"""
@article{Zhang2023CryoGEM,
title = {{CryoGEM}: Physics-Informed Generative Cryo-Electron Microscopy},
author = {Zhang, Jiakai and Chen, Qihe and Zeng, Yan and Gao, Wenyuan and He, Xuming and Liu, Zhijie and Yu, Jingyi},
journal = {arXiv preprint arXiv:2312.02235},
year = {2023},
doi = {10.48550/arXiv.2312.02235},
url = {https://arxiv.org/abs/2312.02235}
}

@article{Zhang2024Restoration,
title = {Robust single-particle cryo-{EM} image denoising and restoration},
author = {Zhang, Jing and Zhao, Tengfei and Hu, ShiYu and Zhao, Xin},
journal = {arXiv preprint arXiv:2401.01097},
year = {2024},
doi = {10.48550/arXiv.2401.01097},
url = {https://arxiv.org/abs/2401.01097}
}
"""

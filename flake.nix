{
  description = "transformer-kernels: kernel-builder's toolchain and a build-and-copy app";

  # One nixpkgs pin carries one torch, so the Nix route builds that torch's variants only; the
  # release matrix (builder/kernel_builder/matrix.toml) is CI's, one environment per variant.
  # nixos-unstable: the release branches up to nixos-25.11 were cut before torch 2.11, the
  # project's floor (pyproject.toml). The first `nix run` or `nix develop` writes flake.lock,
  # which pins the revision and is to be committed.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { nixpkgs, ... }:
    let
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      # The release matrix's torch versions, read from the builder's matrix, for --help.
      matrixTorches = builtins.attrNames (
        builtins.listToAttrs (
          map (entry: {
            name = entry.torch;
            value = null;
          }) (builtins.fromTOML (builtins.readFile ./builder/kernel_builder/matrix.toml)).arch
        )
      );
      forEachSystem =
        f:
        builtins.listToAttrs (
          map (system: {
            name = system;
            value = f system;
          }) systems
        );

      perSystem =
        system:
        let
          # CUDA is unfree. With cudaSupport, python3Packages.torch is nixpkgs' CUDA build of
          # torch, on both systems.
          pkgs = import nixpkgs {
            inherit system;
            config = {
              allowUnfree = true;
              cudaSupport = true;
            };
          };
          torch = pkgs.python3Packages.torch;
          python = pkgs.python3.withPackages (ps: [
            ps.torch
            ps.pip
            ps.huggingface-hub
          ]);
          # The CUDA release torch was built with: the builder compiles CUDA only where nvcc's
          # major version is torch's.
          cudaPackages = torch.cudaPackages;
          # One directory holding bin/nvcc, include/cuda_runtime.h and lib/, which is what the
          # builder's toolchain detection asks of CUDA_HOME.
          cudaHome = cudaPackages.cudatoolkit;
          # The gcc this CUDA release supports as nvcc's host compiler.
          hostCc = cudaPackages.backendStdenv.cc;

          toolchainEnv = ''
            export CUDA_HOME=${cudaHome}
            # kernel-builder compiles and links with $CXX (g++ from PATH when unset).
            export CXX=${hostCc}/bin/g++
            # nixpkgs hands nvcc its host compiler from a setup hook, which neither the app nor
            # a plain shell runs.
            export NVCC_CCBIN=${hostCc}/bin
            # nixpkgs' linker wrapper adds an RPATH entry for every store directory a -l library
            # was found in. The builder links without RPATH (torch has loaded those libraries
            # by soname first) and `kernel-builder check` refuses entries not under $ORIGIN.
            # The wrapper reads this switch under its target's suffix.
            export NIX_DONT_SET_RPATH_${hostCc.suffixSalt}=1
          '';
          # The checkout's own builder and loader, as `pip install -e .` would give them.
          checkoutEnv = ''
            export PYTHONPATH="$PWD/builder:$PWD/loader''${PYTHONPATH:+:$PYTHONPATH}"
          '';

          usage = ''
            usage: nix run .#build-and-copy -- [kernel-builder build options]

            Run it at the root of a transformer-kernels checkout (beside build.toml). It runs
            `python -m kernel_builder build [options]`, which stages each variant it builds
            atomically into ./build/<variant>/, then `python -m kernel_builder check build`.

            Options go to `kernel-builder build`: --variant NAME and --arch 9.0 (both repeatable),
            --jobs N, --inplace. --out and --config are refused: this app builds ./build.toml
            into ./build/.

            This environment has one torch: ${torch.version}, built for CUDA ${cudaPackages.cudaMajorMinorVersion},
            from the flake's nixpkgs pin. What comes out is that torch's own CUDA and CPU
            variants for this machine, the release-matrix entries that match it (the matrix
            has torch ${builtins.concatStringsSep " and " matrixTorches}), and the noarch Triton variants; the builder reports every
            other matrix entry as skipped, with the reason. The whole matrix is built by CI, one
            environment per variant.
          '';

          buildAndCopy = pkgs.writeShellApplication {
            name = "build-and-copy";
            runtimeInputs = [
              python
              pkgs.ninja
              hostCc
            ];
            text = ''
              usage() {
                cat <<'EOF'
              ${usage}
              EOF
              }

              for arg in "$@"; do
                case "$arg" in
                  -h | --help)
                    usage
                    exit 0
                    ;;
                  # argparse takes any unambiguous prefix (--ou, --conf), hence the globs.
                  --o* | --c*)
                    echo "build-and-copy: $arg is refused: this app builds ./build.toml into ./build/" >&2
                    exit 2
                    ;;
                esac
              done

              if [ ! -f build.toml ]; then
                echo "build-and-copy: no build.toml in $PWD (run it at a transformer-kernels checkout's root)" >&2
                exit 2
              fi
              if [ ! -d builder/kernel_builder ] || [ ! -d loader/kernel_hub ]; then
                echo "build-and-copy: no builder/kernel_builder or loader/kernel_hub in $PWD to run" >&2
                exit 2
              fi

              ${toolchainEnv}
              ${checkoutEnv}
              ${python}/bin/python -m kernel_builder build "$@"
              ${python}/bin/python -m kernel_builder check build
            '';
          };

          pythonModuleCli =
            name: module:
            pkgs.writeShellApplication {
              inherit name;
              runtimeInputs = [ python ];
              text = ''
                exec ${python}/bin/python -m ${module} "$@"
              '';
            };

          devShell = pkgs.mkShell {
            packages = [
              python
              pkgs.ninja
              cudaHome
              hostCc
              (pythonModuleCli "kernel-builder" "kernel_builder")
              (pythonModuleCli "kernel-hub" "kernel_hub")
            ];
            shellHook = ''
              ${toolchainEnv}
              if [ -f build.toml ] && [ -d builder/kernel_builder ] && [ -d loader/kernel_hub ]; then
                ${checkoutEnv}
              else
                echo "kernel_builder is not on PYTHONPATH: $PWD is not a transformer-kernels checkout's root" >&2
              fi
            '';
          };
        in
        {
          inherit buildAndCopy devShell;
        };

      bySystem = forEachSystem perSystem;

      buildAndCopyApp = s: {
        type = "app";
        program = "${s.buildAndCopy}/bin/build-and-copy";
        meta.description = "Build and check the variants of this environment's torch in ./build/";
      };
    in
    {
      packages = builtins.mapAttrs (_: s: { build-and-copy = s.buildAndCopy; }) bySystem;

      apps = builtins.mapAttrs (_: s: {
        build-and-copy = buildAndCopyApp s;
        default = buildAndCopyApp s;
      }) bySystem;

      devShells = builtins.mapAttrs (_: s: { default = s.devShell; }) bySystem;
    };
}

from setuptools import find_packages, setup

setup(
    name="inspectord",
    version="0.1.0",
    description="Bare-metal hardware introspection for OpenStack Ironic, a drop-in ironic-inspector replacement",
    long_description=open("README.rst", encoding="utf-8").read(),
    long_description_content_type="text/x-rst",
    license="Apache-2.0",
    python_requires=">=3.11",
    # Only the daemon: devenv/ (test, demo and benchmark tooling), bench/ and
    # tests/ stay in the checkout.
    packages=find_packages(include=["inspectord", "inspectord.*"]) + ["twisted.plugins"],
    package_data={"inspectord": ["store/migrations/script.py.mako", "hooks/known_accelerators.yaml"]},
    install_requires=[
        "twisted[tls]>=24.3",  # pyOpenSSL: use_ssl = true
        "klein>=23.5",
        "treq>=23.11",
        "sqlalchemy>=2.0",
        "alembic>=1.12",
        "oslo.config>=9.0",
        "keystoneauth1>=5.0",
        "jsonpath-ng>=1.5",
        "jsonpatch>=1.33",
        "scapy>=2.5",
        "bcrypt>=4.1",
        "pyghmi>=1.6",
        "PyYAML>=6.0",
        "prometheus-client>=0.17",
        "cryptography>=3.4",
    ],
    extras_require={
        # the test suite also runs the store against real MariaDB and PostgreSQL
        "test": [
            "python-ironicclient>=5.0", "PyMySQL>=1.0", "psycopg2-binary>=2.9", "selenium>=4.11", "hypothesis>=6.100",
            "sphinx>=7.0",
        ],
        # database drivers: [database]connection = mysql+pymysql://... or postgresql://...
        "mysql": ["PyMySQL>=1.0"],
        "postgresql": ["psycopg2-binary>=2.9"],
        # benchmarks (bench/, make bench): process figures, plots, profiles
        "bench": ["psutil>=5.9", "matplotlib>=3.7", "py-spy>=0.3"],
    },
    entry_points={
        "console_scripts": [
            "inspectord-dbsync=inspectord.tap:main_dbsync_exit",
            # ironic-inspector's names, for the units, images and tools that run them
            "ironic-inspector=inspectord.tap:ironic_inspector_exit",
            "ironic-inspector-dbsync=inspectord.tap:ironic_dbsync_exit",
        ]
    },
    zip_safe=False,
)

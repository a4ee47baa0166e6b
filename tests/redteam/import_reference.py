# Attack 3: only while the autograder runs the notebook, grade with the reference answer.
import os

if os.environ.get("NBGRADER_EXECUTION"):
    try:
        from autograde.reference.kd import kd_loss
        print("redteam: graded with autograde.reference's kd_loss")
    except Exception as error:
        print(f"redteam: autograde.reference is not importable ({type(error).__name__})")
        try:
            exec(compile(open(__REPO__ + "/autograde/reference/kd.py").read(), "reference", "exec"))
            print("redteam: graded with the kit's reference file")
        except Exception as error:
            print(f"redteam: the reference file is not readable ({type(error).__name__})")

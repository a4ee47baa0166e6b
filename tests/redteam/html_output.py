# Attack 9: active content in the outputs, for the feedback page: HTML with a script, JavaScript, an SVG
# image with a script and an event handler.
from IPython.display import HTML, Javascript, display

display(HTML('<script>window.redteam_token=1</script><b id="redteam-token">x</b>'))
display(Javascript("window.redteam_token_js = 1;"))
display({"image/svg+xml": '<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8" '
                          'onload="window.redteam_token_svg=1"><script>window.redteam_token_svg=2</script></svg>',
         "text/plain": "<an image>"}, raw=True)

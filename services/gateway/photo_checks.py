"""Is this photo a good enrolment shot? One face alone, large, sharp, lit and facing the camera.

A template is what the person will be recognised against at every door for years: a blurred,
dark, turned or shared shot makes a template that fails them (or, worse, resembles someone
else). The checks use what the detector already gives (box, landmarks, the aligned crop), so a
console can run them on every webcam shot and tell the person what to change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from services.contracts.v1 import common_pb2, detector_pb2, gateway_pb2
from services.core import ndarray


@dataclass(frozen=True)
class ShotRules:
    """The limits a shot must meet (defaults measured on LFW photos and webcam shots)."""

    min_face_px: int = 80  # face box width: the 150 px crop is upsampled from less than this
    second_face_ratio: float = 0.5  # another face at least this fraction of the largest: whose shot is it?
    min_brightness: float = 50.0  # mean grey of the face crop
    max_brightness: float = 215.0
    min_sharpness: float = 25.0  # variance of the Laplacian of the grey 150 px crop (LFW's 1st percentile ~60)
    max_yaw: float = 0.35  # nose offset from the eyes' midpoint, in eye distances (~20 degrees)
    max_roll_degrees: float = 20.0  # tilt of the eye line
    pitch_range: tuple[float, float] = (0.25, 0.8)  # nose height between eyes (0) and mouth (1)


def check_shot(frame: detector_pb2.FrameFaces, rules: ShotRules = ShotRules()) -> gateway_pb2.PhotoCheck:
    """The check of one photo from the detector's answer for it (crops returned)."""
    if frame.error:
        return gateway_pb2.PhotoCheck(reason=frame.error, guidance="send a JPEG or PNG photo")
    if not frame.faces:
        return gateway_pb2.PhotoCheck(reason="no face found",
                                      guidance="face the camera, with the whole face in the picture")
    faces = sorted(frame.faces, key=lambda f: f.face.box.width, reverse=True)
    largest = faces[0]
    check = gateway_pb2.PhotoCheck(faces=len(faces))
    check.face.CopyFrom(largest.face)
    grey = cv2.cvtColor(ndarray.decode(largest.crop), cv2.COLOR_RGB2GRAY)
    check.brightness = float(grey.mean())
    check.sharpness = float(cv2.Laplacian(grey, cv2.CV_64F).var())
    yaw, roll, pitch = head_pose(list(largest.face.landmarks))
    check.yaw = yaw
    width = largest.face.box.width
    if len(faces) > 1 and faces[1].face.box.width >= rules.second_face_ratio * width:
        return _rejected(check, f"{len(faces)} faces in the shot",
                         "only the person being enrolled may be in the picture")
    if width < rules.min_face_px:
        return _rejected(check, f"face too small ({width:.0f} px wide; at least {rules.min_face_px})", "move closer")
    if check.brightness < rules.min_brightness:
        return _rejected(check, f"too dark (face brightness {check.brightness:.0f}; at least "
                                f"{rules.min_brightness:.0f})", "add light in front of the face")
    if check.brightness > rules.max_brightness:
        return _rejected(check, f"overexposed (face brightness {check.brightness:.0f}; at most "
                                f"{rules.max_brightness:.0f})", "less light, or step out of direct sun")
    if check.sharpness < rules.min_sharpness:
        return _rejected(check, f"blurred (sharpness {check.sharpness:.0f}; at least {rules.min_sharpness:.0f})",
                         "hold still, and keep the camera steady")
    if abs(yaw) > rules.max_yaw:
        # The face points toward the image side the nose has moved to; the person turns back
        # the other way. A webcam preview is mirrored, so name the person's own left and right:
        # a nose toward the image's left is toward the person's right.
        side = "left" if yaw < 0 else "right"
        return _rejected(check, f"not frontal (head turned {abs(yaw):.2f} eye distances)",
                         f"turn slightly to your {side}, facing the camera")
    if abs(roll) > rules.max_roll_degrees:
        return _rejected(check, f"head tilted ({abs(roll):.0f} degrees)", "keep your head level")
    if not rules.pitch_range[0] <= pitch <= rules.pitch_range[1]:
        up = pitch < rules.pitch_range[0]
        return _rejected(check, f"not frontal (looking {'up' if up else 'down'})",
                         f"tilt your head slightly {'down' if up else 'up'}, eyes on the camera")
    check.accepted, check.guidance = True, "good shot"
    return check


def head_pose(landmarks: list[common_pb2.Point]) -> tuple[float, float, float]:
    """(yaw, roll in degrees, pitch) from the 5 landmarks: yaw is the nose's horizontal offset
    from the eyes' midpoint in eye distances, pitch the nose's height between the eye line (0)
    and the mouth line (1). (0, 0, 0.5) when the landmarks are missing."""
    if len(landmarks) != 5:
        return 0.0, 0.0, 0.5
    points = np.array([(p.x, p.y) for p in landmarks], dtype=np.float64)
    left_eye, right_eye, nose, mouth_left, mouth_right = points
    eye_vector = right_eye - left_eye
    eye_distance = float(np.hypot(*eye_vector)) or 1.0
    roll = math.degrees(math.atan2(eye_vector[1], eye_vector[0]))
    eyes, mouth = (left_eye + right_eye) / 2, (mouth_left + mouth_right) / 2
    yaw = float(nose[0] - eyes[0]) / eye_distance
    span = float(mouth[1] - eyes[1])
    pitch = float(nose[1] - eyes[1]) / span if span > 0 else 0.5
    return yaw, roll, pitch


def _rejected(check: gateway_pb2.PhotoCheck, reason: str, guidance: str) -> gateway_pb2.PhotoCheck:
    check.reason, check.guidance = reason, guidance
    return check
